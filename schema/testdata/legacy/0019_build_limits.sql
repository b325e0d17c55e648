-- Resource limits of builds, per platform (docs/builder.md, "The sandbox").
-- NULL means the builder's default: 1024 processes, 8 GiB of memory, 20 GiB
-- of disk in the work directory. A build past a limit is killed and its
-- attempt ends failed with the limit named in its reason.

ALTER TABLE kiln.platform
    ADD COLUMN max_processes integer
        CONSTRAINT platform_max_processes_valid CHECK (max_processes BETWEEN 16 AND 1048576),
    ADD COLUMN max_memory bigint
        CONSTRAINT platform_max_memory_valid CHECK (max_memory >= 16 * 1024 * 1024),
    ADD COLUMN max_disk bigint
        CONSTRAINT platform_max_disk_valid CHECK (max_disk >= 1024 * 1024);

COMMENT ON COLUMN kiln.platform.max_processes IS 'Most processes and threads one build may run at once (RLIMIT_NPROC in the build''s own user namespace, and counted by the builder). NULL: 1024.';
COMMENT ON COLUMN kiln.platform.max_memory IS 'Most resident anonymous memory, in bytes, the processes of one build may use together, measured four times a second by the builder. NULL: 8 GiB.';
COMMENT ON COLUMN kiln.platform.max_disk IS 'Most disk space, in bytes, one build may use in its work directory (its private /tmp included), measured while it runs; also the largest single file it may write. NULL: 20 GiB.';
