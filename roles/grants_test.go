package roles_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// matrix is the table in roles/README.md ("What each role may do"), as data:
// for every table, view and sequence of schemas kiln and river, what each
// group role may do. Letters: S select, I insert, U update, D delete,
// N nextval (sequences); I(a,b) and U(a,b) name the only columns allowed.
// A role absent from an object's entry may do nothing with it.
// Row-level security (which rows) is tested in rls_test.go.
var matrix = map[string]map[string]string{
	"kiln.platform":     {"reader": "S", "submitter": "S", "splitter": "S", "builder": "S", "janitor": "S", "admin": "SIUD", "web": "S", "publisher": "S"},
	"kiln.bucket":       {"reader": "S", "submitter": "S", "splitter": "S", "janitor": "S", "admin": "SIUD", "web": "S", "publisher": "S", "reporter": "S"},
	"kiln.bucket_grant": {"reader": "S", "submitter": "S", "splitter": "S", "janitor": "S", "admin": "SIUD", "web": "S", "publisher": "S"},
	"kiln.blob": {"reader": "S", "submitter": "S I(sha256,size,chunk_size,content_sha256)", "splitter": "S U(verified_at)",
		"builder": "S I(sha256,size,chunk_size,content_sha256,verified_at)", "janitor": "S D",
		"admin": "S I(sha256,size,chunk_size,content_sha256)", "web": "S", "publisher": "S I(sha256,size,chunk_size,verified_at)"},
	"kiln.blob_chunk": {"reader": "S", "submitter": "S I(sha256,seq,data)", "splitter": "S", "builder": "S I(sha256,seq,data)",
		"janitor": "S D", "admin": "S I(sha256,seq,data)", "web": "S", "publisher": "S I(sha256,seq,data)"},
	"kiln.job": {"reader": "S", "submitter": "S I(bucket,platforms,priority,policy,note,options,submission_key,resubmit_of)",
		"splitter": "S U(status,reason,validated_at,finished_at)", "builder": "S", "janitor": "S U(status,reason,validated_at,finished_at) D",
		"admin": "S I(bucket,platforms,priority,policy,note,options,submission_key,resubmit_of)", "web": "S", "publisher": "S", "reporter": "S"},
	"kiln.package": {"reader": "S", "submitter": "S I(job_id,seq,file_name,format,blob_sha256,size)",
		"splitter": "S U(name,epoch,version,release,exclusive_arch,exclude_arch,reason)", "builder": "S", "janitor": "S",
		"admin": "S I(job_id,seq,file_name,format,blob_sha256,size)", "web": "S", "reporter": "S"},
	"kiln.package_file": {"reader": "S", "submitter": "S I(job_id,seq,file_name,blob_sha256,size)", "splitter": "S", "builder": "S",
		"janitor": "S", "admin": "S I(job_id,seq,file_name,blob_sha256,size)", "web": "S"},
	"kiln.builder": {"reader": "S", "submitter": "S",
		"builder": "S I(name,host,slots,version,state,heartbeat_at,started_at) U(host,slots,version,state,draining,heartbeat_at,started_at)",
		"janitor": "S U(state)", "admin": "S U(enabled,draining)", "web": "S"},
	"kiln.builder_platform": {"reader": "S", "submitter": "S", "builder": "SID", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.task": {"reader": "S", "submitter": "S", "splitter": "S I(job_id,platform,status,reason,finished_at,river_job_id) U(river_job_id)",
		"builder": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "S", "reporter": "S"},
	// Builders and the janitor change tasks, attempts, logs and artifacts
	// only through the task protocol's functions (attack_builder_test.go).
	"kiln.attempt":          {"reader": "S", "submitter": "S", "builder": "S", "janitor": "S", "admin": "S", "web": "S", "reporter": "S"},
	"kiln.artifact":         {"reader": "S", "submitter": "S", "janitor": "S U(blob_sha256,pruned_at)", "admin": "S", "web": "S", "publisher": "S", "reporter": "S"},
	"kiln.log_chunk":        {"reader": "S", "submitter": "S", "janitor": "S D", "admin": "S", "web": "S", "reporter": "S"},
	"kiln.event":            {"reader": "S", "submitter": "S", "janitor": "S I", "admin": "S", "web": "S"},
	"kiln.protocol_setting": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.farm_setting":     {"reader": "S", "submitter": "S", "janitor": "S", "admin": "SIUD", "web": "S", "reporter": "S"},
	"kiln.quota": {"reader": "S", "submitter": "S", "janitor": "S", "web": "S",
		"admin": "S D I(person,jobs_per_hour,bytes_per_day,options_bytes,platforms_per_job,validate_river_jobs_per_job,river_job_bytes) U(jobs_per_hour,bytes_per_day,options_bytes,platforms_per_job,validate_river_jobs_per_job,river_job_bytes)"},
	"kiln.quota_usage":      {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.quota_river_jobs": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.environment":      {"reader": "S", "submitter": "S", "builder": "S", "janitor": "S", "admin": "S D", "web": "S"},
	"kiln.platform_environment": {"reader": "S", "submitter": "S", "builder": "S", "janitor": "S",
		"admin": "S I(platform,spec,max_age) U(spec,max_age)", "web": "S"},
	"kiln.schema_migration": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.queue_depth":      {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.builder_status":   {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.job_summary":      {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.build_duration":   {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	// Estimates (schema/current/16_eta.sql): people and the web only.
	"kiln.task_eta": {"reader": "S", "submitter": "S", "admin": "S", "web": "S"},
	// Failure stages (schema/0024_failure_stage.sql): a fixed vocabulary
	// and its reporting view; kiln.task_finish writes the stages.
	"kiln.failure_stage":    {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.failure_by_stage": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	// Repositories (schema/0021_repository.sql): the publisher writes them;
	// everyone reads (row-level security hides private buckets).
	"kiln.binary_package":      {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "SID"},
	"kiln.bucket_key":          {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "S I U(active,retired_at)"},
	"kiln.bucket_publication":  {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "S I U(current_snapshot,published_at)"},
	"kiln.publication_request": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "S I(bucket,kind) U(done_at,snapshot_id,outcome)"},
	"kiln.repo_token":          {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.build_repo_token":    {},
	"kiln.queue_turn":          {},
	"kiln.log_watch":           {},
	"kiln.snapshot":            {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "SID"},
	"kiln.repository_file":     {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "S I U(until_seq) D"},
	"kiln.repository_package":  {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.repository_summary":  {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	// Source packages (schema/0029_sources.sql): like binary packages,
	// but row-level security hides those of private buckets.
	"kiln.source_package":             {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "publisher": "SID"},
	"kiln.repository_source":          {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S"},
	"kiln.publication_request_id_seq": {"publisher": "N"},
	// Reports (schema/0027_reports.sql): kiln-reporter reads whom to tell
	// and records deliveries; people write their settings only through the
	// kiln.report_* functions, and --report addresses on their own jobs.
	// Webhook secrets: kiln-reporter alone.
	"kiln.report_person":         {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "reporter": "S"},
	"kiln.report_bucket":         {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "reporter": "S"},
	"kiln.report_webhook":        {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S", "reporter": "S"},
	"kiln.report_webhook_secret": {"reporter": "S"},
	"kiln.job_report_address":    {"reader": "S", "submitter": "S I(job_id,email)", "janitor": "S", "admin": "S I(job_id,email)", "web": "S", "reporter": "S"},
	"kiln.report_delivery": {"reader": "S", "submitter": "S", "janitor": "S", "admin": "S", "web": "S",
		"reporter": "S U(status,tries,last_error,message_id,sent_at)"},
	"kiln.report_webhook_id_seq":  {},
	"kiln.report_delivery_id_seq": {},
	"kiln.snapshot_id_seq":        {},
	// Identity sequences are used by INSERT without any grant.
	"kiln.job_id_seq":         {},
	"kiln.task_id_seq":        {},
	"kiln.artifact_id_seq":    {},
	"kiln.event_id_seq":       {},
	"kiln.environment_id_seq": {},
	// River: an insert-only client (submitter) inserts River jobs, with
	// UPDATE of kind for River's upsert (row-level security lets a person
	// insert only validate River jobs and update none); working clients (splitter, janitor)
	// also elect a leader, record queues and clean up; builders work jobs
	// but never enqueue them.
	"river.river_job":                 {"submitter": "S I U(kind)", "splitter": "SIUD", "builder": "SUD", "janitor": "SIUD", "admin": "S I U(kind)", "web": "S I U(kind)", "reporter": "SU"},
	"river.river_job_id_seq":          {"submitter": "N", "splitter": "N", "janitor": "N", "admin": "N", "web": "N"},
	"river.river_leader":              {"splitter": "SIUD", "builder": "SIUD", "janitor": "SIUD", "admin": "S"},
	"river.river_queue":               {"splitter": "SIUD", "builder": "SIUD", "janitor": "SIUD", "admin": "S", "reporter": "SIU"},
	"river.river_migration":           {"admin": "S"},
	"river.river_notification":        {"admin": "S"},
	"river.river_notification_id_seq": {},
}

// functions is the table in roles/README.md ("Functions"), as data: for
// every function of schema kiln that can be called (not trigger functions,
// which PostgreSQL runs only as triggers), the group roles that may EXECUTE
// it; "*" for every role (PUBLIC: functions that run with the caller's
// rights and row-level security, used inside policies and constraints).
// A function added by a migration fails TestFunctionMatrix until it is
// entered here and in the README.
var functions = map[string][]string{
	"kiln.valid_name(text)":                                {"*"},
	"kiln.safe_file_name(text)":                            {"*"},
	"kiln.bucket_readable(text)":                           {"*"},
	"kiln.blob_readable(bytea)":                            {"*"},
	"kiln.own_validate_river_job(text,text,jsonb,boolean)": {"*"},
	"kiln.own_builders()":                                  {"*"},
	"kiln.job_status_from_tasks(bigint)":                   {"*"},
	"kiln.job_statuses_from_tasks(bigint[])":               {"*"},
	"kiln.cancel_job(bigint)":                              {"submitter", "admin"},
	"kiln.cancel_task(bigint)":                             {"submitter", "admin"},
	"kiln.blob_stored_here(bytea)":                         {"submitter", "admin"},
	"kiln.refresh_job_status(bigint)":                      {"janitor"},
	"kiln.refresh_job_statuses(bigint[])":                  {},
	"kiln.job_request_publications(bigint[])":              {},
	"kiln.job_request_reports(bigint[])":                   {},
	"kiln.lock_job(bigint)":                                {"janitor"},
	"kiln.set_max_lost(integer)":                           {"admin"},
	"kiln.task_check_builder(text)":                        {},
	"kiln.task_check_janitor()":                            {},
	"kiln.task_take(text,bigint,bigint,text)":              {"builder"},
	"kiln.task_take_many(text,bigint[],bigint[],text[])":   {"builder"},
	"kiln.task_finish_many(text,bigint[],integer[],text[],text[],jsonb[],boolean[],text[],integer[],text[],bigint[],text[],text[],bytea[],bigint[],bytea[])": {"builder"},
	"kiln.task_heartbeat(text,bigint[],integer[])":                                                                           {"builder"},
	"kiln.task_log(text,bigint,integer,integer,text,boolean)":                                                                {"builder"},
	"kiln.task_log_many(text,bigint[],integer[],integer[],text[],boolean[])":                                                 {"builder"},
	"kiln.task_finish(text,bigint,integer,text,text,jsonb,boolean,text[],text[],bytea[],bigint[])":                           {"builder"},
	"kiln.task_finish(text,bigint,integer,text,text,jsonb,boolean,text[],text[],bytea[],bigint[],text)":                      {"builder"},
	"kiln.task_finish(text,bigint,integer,text,text,jsonb,boolean,text[],text[],bytea[],bigint[],text,bytea[],integer,text)": {"builder"},
	"kiln.task_give_back(text,bigint,integer)":                                                                               {"builder"},
	"kiln.task_recover(text,bigint,integer)":                                                                                 {"builder"},
	"kiln.task_lose(kiln.task,text,text,text,jsonb)":                                                                         {},
	"kiln.task_take_back_lost(bigint,interval)":                                                                              {"janitor"},
	"kiln.task_time_out(bigint,interval)":                                                                                    {"janitor"},
	"kiln.task_link_river_job(bigint,bigint)":                                                                                {"janitor"},
	"kiln.environment_install(text,text,bytea,jsonb,jsonb)":                                                                  {"builder"},
	"kiln.cancel_job_for(bigint,name,text)":                                                                                  {},
	"kiln.cancel_task_for(bigint,name,text)":                                                                                 {},
	"kiln.web_check_person(name,name)":                                                                                       {"web"},
	"kiln.web_cancel_job(name,bigint)":                                                                                       {"web"},
	"kiln.web_cancel_task(name,bigint)":                                                                                      {"web"},
	"kiln.web_resubmit(name,bigint,text)":                                                                                    {"web"},
	"kiln.resubmit(bigint,text[],text)":                                                                                      {"submitter", "admin"},
	"kiln.resubmit_for(bigint,name,text[],text)":                                                                             {},
	"kiln.web_set_builder_enabled(name,text,boolean)":                                                                        {"web"},
	"kiln.quota_limits(name)":                                                                                                {"*"},
	"kiln.quota_builtin()":                                                                                                   {"admin"},
	"kiln.quota_for(name)":                                                                                                   {},
	"kiln.quota_applies(name)":                                                                                               {},
	"kiln.quota_web_session()":                                                                                               {},
	"kiln.quota_charge(name,text,bigint)":                                                                                    {},
	"kiln.quota_lock(name)":                                                                                                  {},
	"kiln.quota_refuse(name,text,text)":                                                                                      {},
	"kiln.safe_repo_path(text)":                                                                                              {"*"},
	"kiln.snapshot_files(text,integer)":                                                                                      {"*"},
	"kiln.may_publish_to(name,text)":                                                                                         {},
	"kiln.promote_for(name,bigint,text)":                                                                                     {},
	"kiln.publisher_job_sources(bigint)":                                                                                     {"publisher"},
	"kiln.promote(bigint,text)":                                                                                              {"submitter", "admin"},
	"kiln.rollback_bucket(text,integer)":                                                                                     {"submitter", "admin"},
	"kiln.remove_package(text,text,text)":                                                                                    {"submitter", "admin"},
	"kiln.new_repo_token()":                                                                                                  {"submitter", "admin"},
	"kiln.web_promote(name,bigint,text)":                                                                                     {"web"},
	"kiln.web_repo_file(name,text,text,integer,text,text)":                                                                   {"web"},
	"kiln.web_repo_chunk(name,text,text,integer,text,text,integer)":                                                          {"web"},
	"kiln.build_repositories(bigint,text)":                                                                                   {"builder"},
	"kiln.build_repository_snapshots(bigint,text)":                                                                           {"builder"},
	"kiln.build_repository_token(text,bigint,integer,text)":                                                                  {"builder"},
	"kiln.report_address_valid(text)":                                                                                        {"*"},
	"kiln.report_check_when(text)":                                                                                           {},
	"kiln.report_set_for(name,text,text)":                                                                                    {},
	"kiln.report_set(text,text)":                                                                                             {"submitter", "admin"},
	"kiln.report_set_person(name,text,text)":                                                                                 {"admin"},
	"kiln.report_set_bucket(text,text[],text)":                                                                               {"admin"},
	"kiln.report_webhook_add(text,text,text)":                                                                                {"submitter", "admin"},
	"kiln.report_webhook_remove(bigint)":                                                                                     {"submitter", "admin"},
	"kiln.task_eta_rows()":                                                                                                   {"reader", "submitter", "admin", "web"},
	"kiln.watch_logs(bigint[])":                                                                                              {"reader", "submitter", "admin", "web"},
	"kiln.task_eta_on(text[])":                                                                                               {"reader", "submitter", "admin", "web"},
}

// largeObjectFunctions are PostgreSQL's server-side large-object functions:
// no kiln role may call any of them (roles/00-groups.sql).
var largeObjectFunctions = []string{"lo_from_bytea", "lo_create", "lo_creat", "lo_import", "lo_export", "lo_put", "lo_get",
	"lo_open", "lo_close", "lowrite", "loread", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64", "lo_truncate", "lo_truncate64", "lo_unlink"}

var groupRoles = []string{"reader", "submitter", "splitter", "builder", "janitor", "admin", "web", "publisher", "reporter"}

// perm is one parsed matrix entry.
type perm struct {
	sel, del, next bool
	ins, upd       []string // nil: denied; ["*"]: every column
}

func parsePerm(s string) perm {
	var p perm
	for _, tok := range strings.Fields(s) {
		if i := strings.IndexByte(tok, '('); i > 0 {
			cols := strings.Split(strings.TrimSuffix(tok[i+1:], ")"), ",")
			switch tok[:i] {
			case "I":
				p.ins = cols
			case "U":
				p.upd = cols
			default:
				panic("bad matrix entry " + s)
			}
			continue
		}
		for _, c := range tok {
			switch c {
			case 'S':
				p.sel = true
			case 'I':
				p.ins = []string{"*"}
			case 'U':
				p.upd = []string{"*"}
			case 'D':
				p.del = true
			case 'N':
				p.next = true
			default:
				panic("bad matrix entry " + s)
			}
		}
	}
	return p
}

type column struct{ name, typ string }

type object struct {
	name string
	kind string // r table, v view, S sequence
	cols []column
}

func objects(ctx context.Context, t *testing.T, conn *pgx.Conn) []object {
	t.Helper()
	rows, err := conn.Query(ctx, `
		SELECT n.nspname || '.' || c.relname, c.relkind::text,
		       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}'),
		       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}')
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		                        AND a.attidentity <> 'a' AND a.attgenerated = ''
		WHERE n.nspname IN ('kiln', 'river') AND c.relkind IN ('r', 'v', 'S', 'm', 'p', 'f')
		GROUP BY 1, 2 ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []object
	for rows.Next() {
		var o object
		var names, types []string
		if err := rows.Scan(&o.name, &o.kind, &names, &types); err != nil {
			t.Fatal(err)
		}
		for i := range names {
			o.cols = append(o.cols, column{names[i], types[i]})
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGrantMatrix tries every operation on every table, view and sequence as
// every group role and checks the outcome against the matrix, both ways: what
// the matrix allows must work, and everything else must be refused.
// Statements touch no row (WHERE false), so only privileges decide, and
// each runs in a savepoint of a transaction that is rolled back.
func TestGrantMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	admin, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	objs := objects(ctx, t, admin)

	// The matrix covers exactly the database's objects.
	var inDB []string
	for _, o := range objs {
		inDB = append(inDB, o.name)
		if _, ok := matrix[o.name]; !ok {
			t.Errorf("%s is not in the grant matrix: add it to roles/README.md and to matrix in roles/grants_test.go", o.name)
		}
	}
	for name := range matrix {
		if !slices.Contains(inDB, name) {
			t.Errorf("the grant matrix names %s, which the database does not have", name)
		}
	}

	for _, group := range groupRoles {
		t.Run(group, func(t *testing.T) {
			t.Parallel()
			login := krbtest.Unique("gm_" + group + "_")
			createLogin(t, db.URL, login, "kiln_"+group)
			conn, err := pgx.Connect(ctx, db.URLAs(login))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			for _, o := range objs {
				checkObject(ctx, t, tx, group, o, parsePerm(matrix[o.name][group]))
			}
		})
	}
}

func checkObject(ctx context.Context, t *testing.T, tx pgx.Tx, group string, o object, p perm) {
	t.Helper()
	try := func(op, sql string, want bool) {
		t.Helper()
		_, err := tx.Exec(ctx, "SAVEPOINT probe")
		if err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, sql)
		if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT probe"); rbErr != nil {
			t.Fatal(rbErr)
		}
		var pgErr *pgconn.PgError
		denied := errors.As(err, &pgErr) && pgErr.Code == "42501"
		switch {
		case want && err != nil:
			t.Errorf("%s may %s %s, but: %s\n  %v", group, op, o.name, sql, err)
		case !want && err == nil:
			t.Errorf("%s may not %s %s, but it can: %s", group, op, o.name, sql)
		case !want && !denied && o.kind != "v":
			// Views that cannot be written fail for that reason first.
			t.Errorf("%s may not %s %s: want permission denied, got: %s\n  %v", group, op, o.name, sql, err)
		}
	}
	if o.kind == "S" {
		try("nextval", fmt.Sprintf("SELECT nextval('%s')", o.name), p.next)
		return
	}
	try("select", "SELECT * FROM "+o.name+" LIMIT 0", p.sel)
	try("delete", "DELETE FROM "+o.name+" WHERE false", p.del)

	insert := func(cols []column) string {
		names, vals := make([]string, len(cols)), make([]string, len(cols))
		for i, c := range cols {
			names[i], vals[i] = pgx.Identifier{c.name}.Sanitize(), "NULL::"+c.typ
		}
		return fmt.Sprintf("INSERT INTO %s (%s) SELECT %s WHERE false", o.name, strings.Join(names, ", "), strings.Join(vals, ", "))
	}
	update := func(cols []column) string {
		sets := make([]string, len(cols))
		for i, c := range cols {
			sets[i] = pgx.Identifier{c.name}.Sanitize() + " = NULL::" + c.typ
		}
		return fmt.Sprintf("UPDATE %s SET %s WHERE false", o.name, strings.Join(sets, ", "))
	}
	for _, op := range []struct {
		name    string
		allowed []string
		sql     func([]column) string
	}{{"insert", p.ins, insert}, {"update", p.upd, update}} {
		if len(o.cols) == 0 {
			continue
		}
		switch {
		case op.allowed == nil:
			try(op.name, op.sql(o.cols), false)
		case op.allowed[0] == "*":
			try(op.name, op.sql(o.cols), true)
		default:
			var yes []column
			for _, name := range op.allowed {
				i := slices.IndexFunc(o.cols, func(c column) bool { return c.name == name })
				if i < 0 {
					t.Errorf("matrix: %s has no column %s", o.name, name)
					continue
				}
				yes = append(yes, o.cols[i])
			}
			try(op.name, op.sql(yes), true)
			for _, c := range o.cols {
				if !slices.Contains(op.allowed, c.name) {
					try(op.name+" column "+c.name+" of", op.sql([]column{c}), false)
				}
			}
		}
	}
}

// createLogin creates a login role (trust authentication) in groups, dropped
// when the test ends.
func createLogin(t *testing.T, dbURL, name string, groups ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	sort.Strings(groups)
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", name, strings.Join(groups, ", "))); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, pgtest.AdminURL(t))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+name)
	})
}

// TestFunctionMatrix checks EXECUTE on every callable function of schema
// kiln for every group role against functions, both ways: a role listed
// holds it, and a role not listed is refused when it calls the function
// (as the attacker would, with NULL arguments). It also checks that no
// role may create temporary objects or call a large-object function, and
// that NOTIFY, which PostgreSQL cannot refuse, works for every role: the
// listeners treat its payload as a hint (docs/security.md).
func TestFunctionMatrix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT replace(p.oid::regprocedure::text, ' ', ''), p.oid::regproc::text,
		       coalesce(array_agg(format_type(a.t, NULL) ORDER BY a.n) FILTER (WHERE a.t IS NOT NULL), '{}')
		FROM pg_catalog.pg_proc p
		LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, n) ON true
		WHERE p.pronamespace = 'kiln'::regnamespace AND p.prorettype <> 'trigger'::regtype
		GROUP BY p.oid ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		sig, name string
		args      []string
	}
	var fns []fn
	for rows.Next() {
		var f fn
		if err := rows.Scan(&f.sig, &f.name, &f.args); err != nil {
			t.Fatal(err)
		}
		fns = append(fns, f)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var inDB []string
	for _, f := range fns {
		inDB = append(inDB, f.sig)
		if _, ok := functions[f.sig]; !ok {
			t.Errorf("%s is not in the function matrix: add it to roles/README.md and to functions in roles/grants_test.go", f.sig)
		}
	}
	for sig := range functions {
		if !slices.Contains(inDB, sig) {
			t.Errorf("the function matrix names %s, which the database does not have", sig)
		}
	}

	for _, group := range groupRoles {
		t.Run(group, func(t *testing.T) {
			t.Parallel()
			login := krbtest.Unique("fm_" + group + "_")
			createLogin(t, db.URL, login, "kiln_"+group)
			conn, err := pgx.Connect(ctx, db.URLAs(login))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			for _, f := range fns {
				allowed, ok := functions[f.sig]
				if !ok {
					continue
				}
				want := slices.Contains(allowed, "*") || slices.Contains(allowed, group)
				var has bool
				if err := tx.QueryRow(ctx, "SELECT has_function_privilege($1::regprocedure, 'EXECUTE')", f.sig).Scan(&has); err != nil {
					t.Fatal(err)
				}
				if has != want {
					t.Errorf("%s: EXECUTE on %s is %v, want %v", group, f.sig, has, want)
				}
				if want {
					continue
				}
				args := make([]string, len(f.args))
				for i, a := range f.args {
					args[i] = "NULL::" + a
				}
				call := fmt.Sprintf("SELECT %s(%s)", f.name, strings.Join(args, ", "))
				if err := probe(ctx, tx, call); !isDenied(err) {
					t.Errorf("%s may not call %s, but: %s: %v", group, f.sig, call, err)
				}
			}
			// No temporary objects, no large objects.
			var temp bool
			if err := tx.QueryRow(ctx, "SELECT has_database_privilege(current_database(), 'TEMPORARY')").Scan(&temp); err != nil || temp {
				t.Errorf("%s may create temporary objects (%v); roles/00-groups.sql revokes TEMP from PUBLIC", group, err)
			}
			if err := probe(ctx, tx, "CREATE TEMP TABLE probe (a int)"); !isDenied(err) {
				t.Errorf("%s creating a temporary table: %v", group, err)
			}
			lo, err := tx.Query(ctx, `SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p
				WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ($1) AND has_function_privilege(p.oid, 'EXECUTE')`, largeObjectFunctions)
			if err != nil {
				t.Fatal(err)
			}
			callable, err := pgx.CollectRows(lo, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if len(callable) > 0 {
				t.Errorf("%s may call large-object functions %v; roles/00-groups.sql revokes them from PUBLIC", group, callable)
			}
			// NOTIFY: cannot be revoked; covered by the hint rule.
			if err := probe(ctx, tx, `NOTIFY kiln_job, '{"job": 1}'`); err != nil {
				t.Errorf("%s: NOTIFY: %v (if PostgreSQL can now refuse it, refuse it and update docs/security.md)", group, err)
			}
		})
	}
}

// probe runs sql in a savepoint of tx, rolled back afterwards, and returns
// its error.
func probe(ctx context.Context, tx pgx.Tx, sql string) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT probe"); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, sql)
	if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT probe"); rbErr != nil {
		return rbErr
	}
	return err
}

// isDenied reports whether err is PostgreSQL's permission denied.
func isDenied(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42501"
}
