-- A documented name's title is its signature (`functools.lru_cache(maxsize=128, typed=False)`, `str.join(self,
-- iterable, /)`). The text-search parser reads a dotted name as one token ('functools.lru', 'str.join'), so
-- "lru_cache", "isclose" or "join" never matched a title; and parameter names (`pdb.runctx(statement,
-- globals, locals)`) are not what a page is about. A title's subject, the words before its first parenthesis,
-- keeps weight A, plus the last component of a dotted name at its end, with '_' as a word break ('lru cache',
-- 'join': not 'str', so "str" does not find every str method); a parenthesised rest weighs as body text (B).
-- The body is indexed as before. docs/decisions/0006 and 0018.

ALTER TABLE corpus_documents DROP COLUMN tsv;  -- drops corpus_documents_tsv_idx with it
ALTER TABLE corpus_documents ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', split_part(coalesce(title, ''), '(', 1)), 'A')
    || setweight(to_tsvector('english', translate(coalesce(
           substring(split_part(title, '(', 1) FROM '\.([A-Za-z_][A-Za-z0-9_]*)\s*$'), ''), '_', ' ')), 'A')
    || setweight(to_tsvector('english',
           CASE WHEN strpos(title, '(') > 0 THEN substr(title, strpos(title, '(')) ELSE '' END), 'B')
    || setweight(to_tsvector('english', coalesce(body, '')), 'B')
) STORED;
CREATE INDEX corpus_documents_tsv_idx ON corpus_documents USING gin (tsv);
