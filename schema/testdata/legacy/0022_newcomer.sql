-- 0022_newcomer.sql: settings of the farm that every client reads.
--
-- The farm's web address is set once by an admin (kiln admin web-url URL);
-- kiln prints links with it unless the person configured one (--web-url,
-- KILN_WEB_URL, kiln.conf), so links are right on every machine without
-- configuring each. Everyone reads the settings (kiln_reader); only admins
-- write them (roles/kiln_admin.sql).

CREATE TABLE kiln.farm_setting (
    name  text PRIMARY KEY CONSTRAINT farm_setting_name_known CHECK (name IN ('web_url')),
    value text NOT NULL,
    CONSTRAINT farm_setting_web_url_valid CHECK (name <> 'web_url' OR (value ~ '^https?://[^[:space:][:cntrl:]]+$' AND length(value) <= 2000))
);
COMMENT ON TABLE kiln.farm_setting IS 'Settings of the whole farm that every client reads; one row per setting. Admins write them (kiln admin web-url).';
COMMENT ON COLUMN kiln.farm_setting.name IS 'The setting: web_url, the base address of kiln-web, used in printed links.';
COMMENT ON COLUMN kiln.farm_setting.value IS 'Its value; web_url is an http or https address without spaces or control characters.';
GRANT SELECT ON kiln.farm_setting TO kiln_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON kiln.farm_setting TO kiln_admin;
