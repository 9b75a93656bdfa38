-- A small sample of the document archive: documents, their attachments and ingest jobs.
\set ON_ERROR_STOP 1
CREATE TABLE documents (
  id bigserial PRIMARY KEY,
  title text NOT NULL,
  body text NOT NULL,
  status text NOT NULL DEFAULT 'published',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE attachments (
  id bigserial PRIMARY KEY,
  document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
  object_key text NOT NULL UNIQUE,
  content_type text NOT NULL,
  size bigint NOT NULL
);
CREATE TABLE ingest_jobs (
  id bigserial PRIMARY KEY,
  document_id bigint REFERENCES documents (id),
  state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  error text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON documents USING gin (to_tsvector('simple', title || ' ' || body));

INSERT INTO documents (title, body, created_at)
SELECT 'Contract ' || i, 'Body of document ' || i || ': ' || repeat(md5(i::text), 20),
       now() - i * interval '1 hour'
FROM generate_series(1, 2000) AS i;
INSERT INTO attachments (document_id, object_key, content_type, size)
SELECT i, 'documents/' || i || '/scan.pdf', 'application/pdf', 20000 + i FROM generate_series(1, 2000) AS i;
INSERT INTO ingest_jobs (document_id, state, created_at)
SELECT i, 'done', now() - i * interval '1 hour' FROM generate_series(1, 2000) AS i;
