-- A database with real variety, for round-trip tests: run against database "rich" (created by the
-- test with OWNER archive_owner) as superuser. Roles archive_owner/archive_reader exist already.
\set ON_ERROR_STOP 1

ALTER DATABASE rich SET work_mem = '8MB';
ALTER DATABASE rich SET search_path = app, public;
ALTER ROLE archive_reader IN DATABASE rich SET statement_timeout = '30s';
GRANT CONNECT, TEMPORARY ON DATABASE rich TO archive_reader;
REVOKE TEMPORARY ON DATABASE rich FROM PUBLIC;
COMMENT ON DATABASE rich IS 'round-trip test database';

CREATE EXTENSION hstore;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION "uuid-ossp";

CREATE SCHEMA app AUTHORIZATION archive_owner;
CREATE SCHEMA audit AUTHORIZATION archive_owner;
CREATE SCHEMA "Odd Schema" AUTHORIZATION archive_owner;

SET ROLE archive_owner;

CREATE TYPE app.doc_status AS ENUM ('draft', 'published', 'archived');
CREATE DOMAIN app.email AS citext CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE SEQUENCE app.invoice_no START 1000 INCREMENT 7;
CREATE SEQUENCE app.untouched_seq;

CREATE TABLE app.documents (
  id bigserial PRIMARY KEY,
  uid uuid NOT NULL DEFAULT uuid_generate_v4(),
  title text NOT NULL,
  body text,
  status app.doc_status NOT NULL DEFAULT 'draft',
  owner_email app.email,
  tags hstore,
  digest bytea,
  created_at timestamptz NOT NULL DEFAULT now(),
  search tsvector
);
CREATE INDEX documents_title_trgm ON app.documents USING gin (title gin_trgm_ops);
CREATE INDEX documents_search ON app.documents USING gin (search);
-- Statistics that ANALYZE can only gather once the post-data section has made them.
CREATE INDEX documents_lower_title ON app.documents (lower(title));
CREATE STATISTICS app.documents_status_owner (dependencies) ON status, owner_email FROM app.documents;

CREATE TABLE app.attachments (
  id bigserial PRIMARY KEY,
  document_id bigint NOT NULL REFERENCES app.documents (id) ON DELETE CASCADE,
  object_key text NOT NULL UNIQUE,
  content_type text,
  size bigint,
  content_oid oid
);

CREATE TABLE app.ingest_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  document_id bigint REFERENCES app.documents (id),
  state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  error text,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit.events (
  id bigserial,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb,
  PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE audit.events_2025 PARTITION OF audit.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE audit.events_2026 PARTITION OF audit.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE audit.events_other PARTITION OF audit.events DEFAULT;

CREATE TABLE "Odd Schema"."Mixed Case Table" ("Weird Column" text, amount numeric(20, 5), tsr tstzrange);
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v bytea);

CREATE FUNCTION app.touch_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.search := to_tsvector('simple', coalesce(NEW.title, '') || ' ' || coalesce(NEW.body, ''));
  RETURN NEW;
END $$;
CREATE TRIGGER documents_search BEFORE INSERT OR UPDATE ON app.documents
  FOR EACH ROW EXECUTE FUNCTION app.touch_search();

CREATE FUNCTION audit.log_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit.events (at, kind, payload) VALUES (NEW.created_at, 'job.' || NEW.state, to_jsonb(NEW));
  RETURN NEW;
END $$;
CREATE TRIGGER ingest_jobs_audit AFTER INSERT ON app.ingest_jobs
  FOR EACH ROW EXECUTE FUNCTION audit.log_job();

INSERT INTO app.documents (title, body, status, owner_email, tags, digest, created_at)
SELECT 'document ' || i,
       repeat(md5(i::text), 8),
       (ARRAY['draft', 'published', 'archived'])[1 + i % 3]::app.doc_status,
       'user' || i || '@Example.com',
       hstore(ARRAY['dept', 'n'], ARRAY['d' || (i % 7), i::text]),
       digest(i::text, 'sha256'),
       timestamptz '2025-06-01 00:00:00+00' + i * interval '3 hours'
FROM generate_series(1, 3000) AS i;
INSERT INTO app.documents (title, body, owner_email, created_at) VALUES
  ('계약서 한글 문서', E'tab\there, newline\nthere, quote '' and backslash \\', NULL, '2026-02-01 09:00+09'),
  ('null body', NULL, 'a@b.c', '2026-02-02 09:00+09');

INSERT INTO app.ingest_jobs (document_id, state, error, created_at)
SELECT 1 + i % 3000, (ARRAY['queued', 'running', 'done', 'failed'])[1 + i % 4],
       CASE WHEN i % 4 = 3 THEN 'parse error at ' || i END,
       timestamptz '2025-12-30 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, 500) AS i;

-- More COPY text than one 4 MiB batch of the parallel loader, with escapes and multibyte
-- characters, so batches are cut inside it; in the middle, one line longer than a batch.
CREATE TABLE app.notes (id int, note text);
INSERT INTO app.notes
SELECT i, repeat(E'메모 \\ tab\there\nline ' || i || ' ', 1 + i % 20)
FROM generate_series(1, 15000) AS i;
INSERT INTO app.notes VALUES (0, repeat(E'긴 줄\t', 1200000));
INSERT INTO app.notes
SELECT i, repeat(E'메모 \\ tab\there\nline ' || i || ' ', 1 + i % 20)
FROM generate_series(15001, 30000) AS i;

INSERT INTO "Odd Schema"."Mixed Case Table"
SELECT 'row ' || i, i / 7.0, tstzrange(now() - i * interval '1 day', NULL)
FROM generate_series(1, 50) AS i;
INSERT INTO app.cache VALUES ('k', '\xdeadbeef');

-- Large objects owned by archive_owner, referenced from attachments.
INSERT INTO app.attachments (document_id, object_key, content_type, size, content_oid)
SELECT i, 'docs/' || i || '/scan page ' || i || '.pdf', 'application/pdf', 13 * 1000,
       lo_from_bytea(0, convert_to(repeat('page ' || i || ' ', 1000), 'UTF8'))
FROM generate_series(1, 5) AS i;

SELECT nextval('app.invoice_no') FROM generate_series(1, 13);

CREATE MATERIALIZED VIEW app.doc_stats AS
  SELECT status, count(*) AS n FROM app.documents GROUP BY status;
CREATE VIEW app.published AS SELECT id, title FROM app.documents WHERE status = 'published';

CREATE POLICY owner_only ON app.cache USING (true);
COMMENT ON TABLE app.documents IS 'documents of the archive';

GRANT USAGE ON SCHEMA app TO archive_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO archive_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO archive_reader;

RESET ROLE;
