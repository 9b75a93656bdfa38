-- The sample document archive: documents, their attachments (objects in the store), ingest jobs.
CREATE TABLE IF NOT EXISTS documents (
  id bigserial PRIMARY KEY,
  title text NOT NULL,
  body text NOT NULL,
  status text NOT NULL DEFAULT 'published',
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS attachments (
  id bigserial PRIMARY KEY,
  document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
  bucket text NOT NULL DEFAULT 'attachments',
  object_key text NOT NULL UNIQUE,
  content_type text NOT NULL,
  size bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_jobs (
  id bigserial PRIMARY KEY,
  document_id bigint REFERENCES documents (id) ON DELETE SET NULL,
  state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz
);
CREATE INDEX IF NOT EXISTS documents_search ON documents USING gin (to_tsvector('simple', title || ' ' || body));
CREATE INDEX IF NOT EXISTS ingest_jobs_state ON ingest_jobs (state, created_at);
