-- name: invoice_fields
-- description: Vendor, number, date, currency, total and line items of short invoice texts (Responses API, JSON Schema file).
-- endpoint: /v1/responses
-- model: gpt-4.1-mini
-- system: Extract the invoice fields from the document. Use null for a field the document does not state. Amounts are numbers without currency symbols or thousands separators.
-- output_schema: invoice.schema.json
--
-- # Run from the repository root (OPENAI_API_KEY set; add --base-url http://127.0.0.1:PORT/v1 for the emulator):
-- #   warehouse-batch run examples/extraction/extract_invoices.sql --db invoices.duckdb --wait
SELECT doc_id AS custom_id, document AS prompt, received
FROM read_csv('examples/extraction/invoices.csv', header = true)
