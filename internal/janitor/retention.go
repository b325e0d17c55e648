package janitor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// expired is true for a job that finished longer ago than its bucket's
// retention, or the default retention ($1, seconds) when the bucket sets none.
const expired = `j.finished_at < now() - coalesce(b.retention, make_interval(secs => $1))`

// pruneExpiredJobs deletes the log of every job past its retention and
// drops its artifacts' content (the artifact rows stay as history, with
// pruned_at set). The blobs that thereby lose their last reference go in
// removeUnreferencedBlobs.
func (j *Janitor) pruneExpiredJobs(ctx context.Context, c *Counts) error {
	cs, err := j.candidates(ctx, `SELECT 0::bigint, j.id FROM kiln.job j LEFT JOIN kiln.bucket b ON b.name = j.bucket
		WHERE `+expired+` AND (
		      EXISTS (SELECT 1 FROM kiln.task t JOIN kiln.log_chunk l ON l.task_id = t.id WHERE t.job_id = j.id)
		   OR EXISTS (SELECT 1 FROM kiln.task t JOIN kiln.artifact a ON a.task_id = t.id
		              WHERE t.job_id = j.id AND a.blob_sha256 IS NOT NULL))
		ORDER BY j.finished_at LIMIT $2`, secs(j.cfg.Retention), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding jobs past their retention: %w", err)
	}
	var errs []error
	for _, cand := range cs {
		err := j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
			var retention seconds
			err := tx.QueryRow(ctx, `SELECT extract(epoch FROM coalesce(b.retention, make_interval(secs => $1)))::float8
				FROM kiln.job j LEFT JOIN kiln.bucket b ON b.name = j.bucket WHERE j.id = $2 AND `+expired,
				secs(j.cfg.Retention), cand.JobID).Scan(&retention)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // its bucket's retention grew meanwhile
			}
			if err != nil {
				return fmt.Errorf("re-reading job: %w", err)
			}
			logs, err := tx.Exec(ctx, `DELETE FROM kiln.log_chunk l USING kiln.task t
				WHERE t.id = l.task_id AND t.job_id = $1`, cand.JobID)
			if err != nil {
				return fmt.Errorf("deleting logs: %w", err)
			}
			arts, err := tx.Exec(ctx, `UPDATE kiln.artifact a SET blob_sha256 = NULL, pruned_at = now()
				FROM kiln.task t WHERE t.id = a.task_id AND t.job_id = $1 AND a.blob_sha256 IS NOT NULL`, cand.JobID)
			if err != nil {
				return fmt.Errorf("pruning artifacts: %w", err)
			}
			if logs.RowsAffected() == 0 && arts.RowsAffected() == 0 {
				return nil // another janitor pruned it
			}
			if err := record(ctx, tx, event{Kind: "janitor.prune", JobID: &cand.JobID, Detail: map[string]any{
				"log_chunks": logs.RowsAffected(), "artifacts": arts.RowsAffected(),
				"retention_seconds": int64(retention)}}); err != nil {
				return err
			}
			d.JobsPruned++
			d.LogChunksPruned += logs.RowsAffected()
			d.ArtifactsPruned += arts.RowsAffected()
			return nil
		})
		if err != nil {
			j.log.Warn("pruning a job failed; retrying next round", "job", cand.JobID, "err", err)
			errs = append(errs, fmt.Errorf("job %d: %w", cand.JobID, err))
		}
	}
	return errors.Join(errs...)
}

// deleteOldJobs deletes the rows of jobs finished longer ago than
// DeleteJobsAfter (and than their retention), when that is configured. Their
// packages, tasks, attempts, artifacts and logs go with them (foreign keys
// cascade); their events stay.
func (j *Janitor) deleteOldJobs(ctx context.Context, c *Counts) error {
	if j.cfg.DeleteJobsAfter <= 0 {
		return nil
	}
	const old = `j.finished_at < now() - greatest(make_interval(secs => $1), coalesce(b.retention, make_interval(secs => $2)))`
	return j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
		rows, err := tx.Query(ctx, `DELETE FROM kiln.job d WHERE d.id IN (
				SELECT j.id FROM kiln.job j LEFT JOIN kiln.bucket b ON b.name = j.bucket
				WHERE `+old+` ORDER BY j.finished_at LIMIT $3)
			RETURNING d.id, d.status, d.bucket, d.submitter::text`,
			secs(j.cfg.DeleteJobsAfter), secs(j.cfg.Retention), j.cfg.Batch)
		if err != nil {
			return fmt.Errorf("deleting old jobs: %w", err)
		}
		type gone struct {
			ID        int64
			Status    string
			Bucket    string
			Submitter string
		}
		deleted, err := pgx.CollectRows(rows, pgx.RowToStructByPos[gone])
		if err != nil {
			return fmt.Errorf("deleting old jobs: %w", err)
		}
		for _, d := range deleted {
			if err := record(ctx, tx, event{Kind: "janitor.delete_job", JobID: &d.ID, OldStatus: &d.Status,
				Detail: map[string]any{"bucket": d.Bucket, "submitter": d.Submitter,
					"older_than_seconds": int64(secs(j.cfg.DeleteJobsAfter))}}); err != nil {
				return err
			}
		}
		d.JobsDeleted += len(deleted)
		return nil
	})
}

// removeUnreferencedBlobs removes blobs that no row references and that are
// older than the grace period, which covers a submit or builder transaction
// that stored a blob and has not yet committed the row pointing at it.
//
// The references are every foreign key to kiln.blob (found in the catalog,
// so a table added later is honoured without a change here). Each delete
// re-checks them in its own statement, and the foreign keys themselves are
// the last guard: a transaction that began to reference a blob holds a lock
// on its row, so the delete waits and then fails, and the blob stays.
func (j *Janitor) removeUnreferencedBlobs(ctx context.Context, c *Counts) error {
	refs, err := blobReferences(ctx, j.db)
	if err != nil {
		return err
	}
	unreferenced := `b.created_at < now() - make_interval(secs => $1)`
	for _, r := range refs {
		unreferenced += " AND " + r
	}
	rows, err := j.db.Query(ctx, `SELECT b.sha256, b.size FROM kiln.blob b WHERE `+unreferenced+`
		ORDER BY b.created_at LIMIT $2`, secs(j.cfg.BlobGrace), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding unreferenced blobs: %w", err)
	}
	type blobRow struct {
		Sum  []byte
		Size int64
	}
	blobs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[blobRow])
	if err != nil {
		return fmt.Errorf("finding unreferenced blobs: %w", err)
	}
	var (
		removed int
		bytes   int64
		errs    []error
	)
	for _, b := range blobs {
		tag, err := j.db.Exec(ctx, `DELETE FROM kiln.blob b WHERE b.sha256 = $2 AND `+unreferenced,
			secs(j.cfg.BlobGrace), b.Sum)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "23503": // foreign_key_violation
			c.BlobsStillReferenced++
		case err != nil:
			j.log.Warn("removing a blob failed; retrying next round", "blob", fmt.Sprintf("%x", b.Sum), "err", err)
			errs = append(errs, fmt.Errorf("blob %x: %w", b.Sum, err))
		case tag.RowsAffected() == 1:
			removed++
			bytes += b.Size
		}
		if ctx.Err() != nil {
			break
		}
	}
	c.BlobsRemoved += removed
	c.BlobBytesRemoved += bytes
	if removed > 0 {
		if err := record(ctx, j.db, event{Kind: "janitor.prune", Detail: map[string]any{
			"blobs": removed, "bytes": bytes, "grace_seconds": int64(secs(j.cfg.BlobGrace))}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// blobReferences returns one "NOT EXISTS (...)" condition on b.sha256 per
// foreign key that points at kiln.blob, except the blob's own chunks.
func blobReferences(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT format('NOT EXISTS (SELECT 1 FROM %I.%I x WHERE x.%I = b.sha256)', n.nspname, r.relname, a.attname)
		FROM pg_constraint c
		JOIN pg_class r ON r.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = r.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		WHERE c.contype = 'f' AND c.confrelid = 'kiln.blob'::regclass AND cardinality(c.conkey) = 1
		  AND c.conrelid <> 'kiln.blob_chunk'::regclass
		ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("listing references to blobs: %w", err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing references to blobs: %w", err)
	}
	if len(refs) == 0 || !strings.Contains(strings.Join(refs, " "), "kiln.package ") {
		// Without the known references something is badly wrong (a catalog
		// we cannot read); removing blobs then would be reckless.
		return nil, fmt.Errorf("found %d references to kiln.blob, expected kiln.package's among them", len(refs))
	}
	return refs, nil
}
