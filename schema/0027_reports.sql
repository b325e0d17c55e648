-- 0027_reports.sql: one report per job (docs/reports.md).
--
-- When a job ends, a trigger (schema/current/14_reports.sql) writes one
-- kiln.report_delivery row per recipient and the River jobs that deliver
-- them, in the transaction that gives the job its final status. kiln-reporter
-- (role kiln_reporter) sends the mail and the webhooks and records each
-- delivery. Who is told, and when, is set per person, per bucket and per job:
--   * kiln.report_person: a person's address and when they want mail;
--   * kiln.report_bucket: a bucket's list of addresses and when;
--   * kiln.job_report_address: the addresses of kiln submit --report;
--   * kiln.report_webhook (+ kiln.report_webhook_secret): webhooks of a
--     person's jobs or of a bucket's jobs.
-- Addresses and webhook addresses are personal: people read only their own
-- (row-level security); secrets are read by kiln-reporter alone.

CREATE TABLE kiln.report_person (
    person      name PRIMARY KEY,
    email       text CONSTRAINT report_person_email_valid
                     CHECK (email IS NULL OR (length(email) <= 254 AND email ~ '^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$')),
    report_when text NOT NULL DEFAULT 'always' CONSTRAINT report_person_when_known CHECK (report_when IN ('always', 'failure', 'never')),
    set_by      name NOT NULL DEFAULT session_user,
    set_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.report_person IS 'Where and when a person is told that their job ended (kiln report set; admins: kiln admin report person). No row: no mail to the submitter, only to kiln submit --report addresses.';
COMMENT ON COLUMN kiln.report_person.person IS 'The person (login role).';
COMMENT ON COLUMN kiln.report_person.email IS 'Their address for reports; NULL: none. A plain address (no name, no spaces, no control characters).';
COMMENT ON COLUMN kiln.report_person.report_when IS 'always, failure (the job failed, partially failed or was invalid) or never; also decides the --report addresses of their jobs and their own webhooks'' default.';
COMMENT ON COLUMN kiln.report_person.set_by IS 'Who set it last (session_user).';
COMMENT ON COLUMN kiln.report_person.set_at IS 'When it was set last.';

CREATE TABLE kiln.report_bucket (
    bucket      text PRIMARY KEY REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    emails      text[] NOT NULL DEFAULT '{}' CONSTRAINT report_bucket_emails_valid
                     CHECK (cardinality(emails) <= 50 AND array_to_string(emails, ' ') !~ '[[:cntrl:]]'),
    report_when text NOT NULL DEFAULT 'failure' CONSTRAINT report_bucket_when_known CHECK (report_when IN ('always', 'failure', 'never')),
    set_by      name NOT NULL DEFAULT session_user,
    set_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kiln.report_bucket IS 'Addresses told about every job of a bucket (a team''s list), and when; set by admins (kiln admin report bucket).';
COMMENT ON COLUMN kiln.report_bucket.bucket IS 'The bucket.';
COMMENT ON COLUMN kiln.report_bucket.emails IS 'Plain addresses (each checked by kiln.report_address_valid when set), at most 50.';
COMMENT ON COLUMN kiln.report_bucket.report_when IS 'always, failure or never.';
COMMENT ON COLUMN kiln.report_bucket.set_by IS 'Who set it last (session_user).';
COMMENT ON COLUMN kiln.report_bucket.set_at IS 'When it was set last.';

CREATE TABLE kiln.job_report_address (
    job_id  bigint NOT NULL REFERENCES kiln.job (id) ON DELETE CASCADE,
    email   text NOT NULL CONSTRAINT job_report_address_valid
                 CHECK (length(email) <= 254 AND email ~ '^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$'),
    PRIMARY KEY (job_id, email)
);
COMMENT ON TABLE kiln.job_report_address IS 'The addresses given with kiln submit --report ADDR, inserted by the submitter in the submit transaction; told as the submitter''s report_when says.';
COMMENT ON COLUMN kiln.job_report_address.job_id IS 'The job.';
COMMENT ON COLUMN kiln.job_report_address.email IS 'A plain address (no name, no spaces, no control characters).';

CREATE TABLE kiln.report_webhook (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person      name,
    bucket      text REFERENCES kiln.bucket (name) ON DELETE CASCADE,
    url         text NOT NULL CONSTRAINT report_webhook_url_valid
                     CHECK (url ~ '^https?://[^[:space:][:cntrl:]]+$' AND length(url) <= 2000),
    report_when text NOT NULL DEFAULT 'always' CONSTRAINT report_webhook_when_known CHECK (report_when IN ('always', 'failure', 'never')),
    created_by  name NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT report_webhook_one_owner CHECK ((person IS NULL) <> (bucket IS NULL))
);
COMMENT ON TABLE kiln.report_webhook IS 'Webhooks told when a job ends: a person''s (their own jobs) or a bucket''s (every job of it, set by admins). Made by kiln.report_webhook_add, which returns the secret once.';
COMMENT ON COLUMN kiln.report_webhook.id IS 'Its number.';
COMMENT ON COLUMN kiln.report_webhook.person IS 'The person whose jobs it reports; NULL for a bucket''s webhook.';
COMMENT ON COLUMN kiln.report_webhook.bucket IS 'The bucket whose jobs it reports; NULL for a person''s webhook.';
COMMENT ON COLUMN kiln.report_webhook.url IS 'Where the JSON report is POSTed (http or https).';
COMMENT ON COLUMN kiln.report_webhook.report_when IS 'always, failure or never.';
COMMENT ON COLUMN kiln.report_webhook.created_by IS 'Who made it (session_user).';
COMMENT ON COLUMN kiln.report_webhook.created_at IS 'When it was made.';

CREATE TABLE kiln.report_webhook_secret (
    webhook_id bigint PRIMARY KEY REFERENCES kiln.report_webhook (id) ON DELETE CASCADE,
    secret     text NOT NULL CONSTRAINT report_webhook_secret_length CHECK (length(secret) >= 32)
);
COMMENT ON TABLE kiln.report_webhook_secret IS 'The HMAC-SHA256 key of each webhook, apart from kiln.report_webhook so that no reader, person or admin can SELECT it: only kiln_reporter reads it (roles/kiln_reporter.sql). Shown once, when kiln.report_webhook_add makes it.';
COMMENT ON COLUMN kiln.report_webhook_secret.webhook_id IS 'The webhook.';
COMMENT ON COLUMN kiln.report_webhook_secret.secret IS 'The key (64 hex digits from gen_random_uuid''s strong random source).';

CREATE TABLE kiln.report_delivery (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES kiln.job (id) ON DELETE CASCADE,
    channel     text NOT NULL CONSTRAINT report_delivery_channel_known CHECK (channel IN ('mail', 'webhook')),
    target      text NOT NULL,
    webhook_id  bigint REFERENCES kiln.report_webhook (id) ON DELETE SET NULL,
    job_status  text NOT NULL,
    status      text NOT NULL DEFAULT 'pending' CONSTRAINT report_delivery_status_known CHECK (status IN ('pending', 'sent', 'failed')),
    tries       integer NOT NULL DEFAULT 0,
    last_error  text,
    message_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    CONSTRAINT report_delivery_once UNIQUE (job_id, channel, target)
);
COMMENT ON TABLE kiln.report_delivery IS 'One row per job and recipient, written when the job ends (kiln.job_request_report); kiln-reporter sends what is pending and records it as sent, so a retried River job never sends twice what was recorded (docs/reports.md, "Exactly once?").';
COMMENT ON COLUMN kiln.report_delivery.id IS 'Its number.';
COMMENT ON COLUMN kiln.report_delivery.job_id IS 'The job reported.';
COMMENT ON COLUMN kiln.report_delivery.channel IS 'mail or webhook.';
COMMENT ON COLUMN kiln.report_delivery.target IS 'The address (mail) or the webhook number (webhook), as text.';
COMMENT ON COLUMN kiln.report_delivery.webhook_id IS 'The webhook, while it exists.';
COMMENT ON COLUMN kiln.report_delivery.job_status IS 'The job''s final status when the row was written.';
COMMENT ON COLUMN kiln.report_delivery.status IS 'pending, sent, or failed (River gave up, or the recipient refused for good).';
COMMENT ON COLUMN kiln.report_delivery.tries IS 'How many times sending was tried.';
COMMENT ON COLUMN kiln.report_delivery.last_error IS 'Why the last try failed.';
COMMENT ON COLUMN kiln.report_delivery.message_id IS 'The Message-ID of the mail (the same for every try and recipient of a job) or the X-Kiln-Delivery of the webhook.';
COMMENT ON COLUMN kiln.report_delivery.created_at IS 'When the job ended and the row was written.';
COMMENT ON COLUMN kiln.report_delivery.sent_at IS 'When the recipient accepted it.';
CREATE INDEX report_delivery_pending ON kiln.report_delivery (job_id) WHERE status = 'pending';

ALTER TABLE kiln.report_person ENABLE ROW LEVEL SECURITY;
ALTER TABLE kiln.job_report_address ENABLE ROW LEVEL SECURITY;
ALTER TABLE kiln.report_webhook ENABLE ROW LEVEL SECURITY;
ALTER TABLE kiln.report_webhook_secret ENABLE ROW LEVEL SECURITY;
ALTER TABLE kiln.report_delivery ENABLE ROW LEVEL SECURITY;
