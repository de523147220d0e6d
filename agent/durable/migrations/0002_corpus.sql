-- The local document corpus searched with PostgreSQL full-text search (tools/_corpus.py): the Python
-- reference shipped with the interpreter plus whatever the user ingests. See docs/decisions/0006.

CREATE TABLE corpus_documents (
    id           bigserial PRIMARY KEY,
    url          text NOT NULL UNIQUE,          -- stable: corpus://{collection}/{path} or a docs.python.org page
    collection   text NOT NULL,
    source       text,                          -- file path, or module/topic name
    title        text,
    body         text,
    content_hash text,                          -- sha256 of what was indexed: unchanged documents are not rewritten
    -- Title words weigh more than body words; 'english' gives stemming and stop words.
    tsv          tsvector GENERATED ALWAYS AS (
                     setweight(to_tsvector('english', coalesce(title, '')), 'A')
                     || setweight(to_tsvector('english', coalesce(body, '')), 'B')
                 ) STORED,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX corpus_documents_tsv_idx ON corpus_documents USING gin (tsv);
CREATE INDEX corpus_documents_collection_idx ON corpus_documents (collection);

-- Collections built by the program itself (python-docs) record what produced them, so a different
-- interpreter version or extractor re-indexes instead of serving stale text.
CREATE TABLE corpus_collections (
    name       text PRIMARY KEY,
    version    text NOT NULL,
    documents  integer NOT NULL,
    indexed_at timestamptz NOT NULL DEFAULT now()
);
