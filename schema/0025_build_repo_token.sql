-- Builds against private buckets: a credential per build attempt and bucket,
-- never a person's token (schema/current/12_repos.sql).
CREATE TABLE kiln.build_repo_token (
    token_sha256 bytea PRIMARY KEY CONSTRAINT build_repo_token_sha256_length CHECK (length(token_sha256) = 32),
    bucket       text NOT NULL REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    task_id      bigint NOT NULL REFERENCES kiln.task (id) ON DELETE CASCADE,
    attempt      integer NOT NULL CONSTRAINT build_repo_token_attempt_positive CHECK (attempt > 0),
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.build_repo_token IS 'Read-only credentials a builder gets for one build attempt to read one private bucket''s repositories through kiln-web (HTTP basic password, as with kiln.repo_token). Only the SHA-256 is stored. A token reads that bucket only, and only while its attempt is building and before it expires.';
COMMENT ON COLUMN kiln.build_repo_token.token_sha256 IS 'SHA-256 of the token.';
COMMENT ON COLUMN kiln.build_repo_token.bucket IS 'The one bucket whose repositories the token reads.';
COMMENT ON COLUMN kiln.build_repo_token.task_id IS 'The task whose build the token is for.';
COMMENT ON COLUMN kiln.build_repo_token.attempt IS 'The attempt of the task: the token stops working when the task is no longer building this attempt.';
COMMENT ON COLUMN kiln.build_repo_token.expires_at IS 'When the token stops working at the latest (made with the platform''s timeout).';
COMMENT ON COLUMN kiln.build_repo_token.created_at IS 'When it was made.';
CREATE INDEX build_repo_token_task_idx ON kiln.build_repo_token (task_id);
ALTER TABLE kiln.build_repo_token ENABLE ROW LEVEL SECURITY;
