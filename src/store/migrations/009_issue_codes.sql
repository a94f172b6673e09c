-- What a warning is about (src/import/types.ts WARNING_CODES), set where the warning is made: the
-- report's advice is keyed on it rather than on the wording of the message. NULL for errors, and
-- for warnings recorded before this migration: no report is rendered from those again with advice
-- (a held import's approval reads its file again; see src/report/model.ts warningAdvice).
ALTER TABLE import_issues ADD COLUMN code text;
