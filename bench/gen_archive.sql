-- An archive-like database for the benchmarks: documents with text bodies of low compressibility
-- (hex of random bytes, kept under the TOAST threshold so pages hold them as they are), their
-- attachment rows, and ingest_jobs. :docs sets the scale; 600000 gives ~1.1 GB.
\set ON_ERROR_STOP 1
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE documents (
  id bigserial PRIMARY KEY,
  title text NOT NULL,
  body text NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL
);
CREATE TABLE attachments (
  id bigserial PRIMARY KEY,
  document_id bigint NOT NULL,
  object_key text NOT NULL,
  content_type text NOT NULL,
  size bigint NOT NULL,
  sha256 text NOT NULL
);
CREATE TABLE ingest_jobs (
  id bigserial PRIMARY KEY,
  document_id bigint NOT NULL,
  state text NOT NULL,
  error text,
  created_at timestamptz NOT NULL
);
INSERT INTO documents (title, body, status, created_at)
SELECT 'Document ' || i || ' ' || substr(md5(i::text), 1, 12),
       'Contract text ' || i || ': ' || encode(gen_random_bytes(800), 'hex'),
       (ARRAY['draft', 'published', 'archived'])[1 + i % 3],
       timestamptz '2024-01-01' + i * interval '47 seconds'
FROM generate_series(1, :docs) AS i;
INSERT INTO attachments (document_id, object_key, content_type, size, sha256)
SELECT i, 'documents/' || i || '/' || md5(i::text) || '.pdf', 'application/pdf',
       10000 + (i::bigint * 7919) % 5000000, encode(sha256(i::text::bytea), 'hex')
FROM generate_series(1, :docs) AS i;
INSERT INTO ingest_jobs (document_id, state, error, created_at)
SELECT i, (ARRAY['done', 'done', 'done', 'failed'])[1 + i % 4],
       CASE WHEN i % 4 = 3 THEN 'ocr failed on page ' || (i % 17) END,
       timestamptz '2024-01-01' + i * interval '47 seconds'
FROM generate_series(1, :docs) AS i;
CREATE INDEX ON documents (created_at);
CREATE INDEX ON attachments (document_id);
CREATE INDEX ON ingest_jobs (state, created_at);
ANALYZE;
