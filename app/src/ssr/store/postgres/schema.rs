//! The PostgreSQL schema and its history: numbered migrations of its own (the SQLite file's
//! history is older and differs), run in one transaction under an advisory lock, so servers
//! that start together migrate once and the others find it done.

use tokio_postgres::Client;

/// Held (for the migrating transaction only) by whoever migrates.
const MIGRATING: i64 = 0x6f66_666c_6f61_6401;

/// The schema's history, oldest first: a migration is never edited once released, only
/// followed by another. `offload_migrations` records which have run.
const MIGRATIONS: &[&str] = &[
    // 1: everything the SQLite file holds at its migration 11, in PostgreSQL's terms. The
    // search is `pg_trgm`'s GIN indexes on the input and the line (ILIKE through them), kept by
    // PostgreSQL as rows change: no log, no indexer. Each owner's count of ended tasks (the
    // per-owner cap) and the count of owners are kept by triggers, as in the SQLite file.
    r#"
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO meta (key, value) VALUES ('owners', 0);
    CREATE TABLE sessions (
        id text PRIMARY KEY,
        -- {task type: its form's next input}
        next_inputs jsonb NOT NULL
    );
    -- Orders the terminal lines: a task takes the next number when it ends.
    CREATE SEQUENCE done_seq;
    CREATE TABLE tasks (
        id bigint PRIMARY KEY,
        session text NOT NULL,
        task_type text NOT NULL,
        -- JSON, as the server wrote it (the search reads it as text).
        input text NOT NULL,
        -- The input in brief, as the queue shows it.
        args text NOT NULL,
        submitted_at_ms bigint NOT NULL,
        done_seq bigint,
        outcome text,
        text text,
        output text,
        finished_at_ms bigint,
        output_media text,
        output_data bytea,
        retry_of bigint,
        idempotency_key text,
        request_sha256 bytea,
        started_at_ms bigint,
        worker text,
        attempts bigint,
        batch bigint,
        member bigint,
        reuse_key bigint,
        reused_from bigint
    );
    CREATE INDEX tasks_by_session ON tasks (session, done_seq);
    CREATE UNIQUE INDEX tasks_by_idempotency_key ON tasks (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX tasks_by_end ON tasks (finished_at_ms) WHERE done_seq IS NOT NULL;
    CREATE INDEX tasks_by_owner ON tasks (session, id);
    CREATE INDEX tasks_by_owner_type ON tasks (session, task_type, id);
    CREATE INDEX tasks_by_owner_outcome ON tasks (session, outcome, id);
    CREATE INDEX tasks_listed ON tasks (session, id) WHERE batch IS NULL OR member = 0;
    CREATE INDEX tasks_by_reuse_key ON tasks (reuse_key) WHERE reuse_key IS NOT NULL;
    CREATE INDEX tasks_by_batch ON tasks (batch, member, outcome) WHERE batch IS NOT NULL;
    CREATE INDEX tasks_input_trigrams ON tasks USING gin (input gin_trgm_ops);
    CREATE INDEX tasks_line_trigrams ON tasks USING gin (text gin_trgm_ops);
    CREATE TABLE tokens (
        -- Public: the part of the token between offload_ and the secret.
        id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        secret_sha256 bytea NOT NULL,
        created_at_ms bigint NOT NULL,
        revoked_at_ms bigint
    );
    CREATE TABLE batches (
        id bigint PRIMARY KEY,
        session text NOT NULL,
        task_type text NOT NULL,
        -- JSON: the resolved specification
        spec text NOT NULL,
        members bigint NOT NULL,
        -- Members handed to the queue so far: the next one's index.
        fed bigint NOT NULL DEFAULT 0,
        created_at_ms bigint NOT NULL,
        cancelled_at_ms bigint,
        finished_at_ms bigint,
        idempotency_key text,
        request_sha256 bytea,
        retry_of bigint,
        reuse boolean NOT NULL DEFAULT false
    );
    CREATE INDEX batches_by_owner ON batches (session, id);
    CREATE INDEX batches_open ON batches (id) WHERE finished_at_ms IS NULL;
    CREATE UNIQUE INDEX batches_by_idempotency_key ON batches (session, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE TABLE owners (session text PRIMARY KEY, ended bigint NOT NULL);
    CREATE FUNCTION owners_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE meta SET value = value + CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END
            WHERE key = 'owners';
        RETURN NULL;
    END $$;
    CREATE TRIGGER owners_counted AFTER INSERT OR DELETE ON owners
        FOR EACH ROW EXECUTE FUNCTION owners_counted();
    -- Every path that ends or deletes a task keeps the owner's count; a batch goes with its
    -- last member once no other member is to come.
    CREATE FUNCTION tasks_counted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF OLD.done_seq IS NOT NULL THEN
                UPDATE owners SET ended = ended - 1 WHERE session = OLD.session;
                DELETE FROM owners WHERE session = OLD.session AND ended <= 0;
            END IF;
            IF OLD.batch IS NOT NULL THEN
                DELETE FROM batches WHERE id = OLD.batch
                    AND (fed >= members OR cancelled_at_ms IS NOT NULL)
                    AND NOT EXISTS (SELECT 1 FROM tasks WHERE batch = OLD.batch);
            END IF;
        ELSIF NEW.done_seq IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.done_seq IS NULL) THEN
            INSERT INTO owners (session, ended) VALUES (NEW.session, 1)
                ON CONFLICT (session) DO UPDATE SET ended = owners.ended + 1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER tasks_counted AFTER INSERT OR DELETE OR UPDATE OF done_seq ON tasks
        FOR EACH ROW EXECUTE FUNCTION tasks_counted();
    "#,
    // 2: the writing server's heartbeat, in ms since the Unix epoch on the database's clock
    // (so that the servers' clocks do not matter): a standby cuts off a server that holds the
    // database but has stopped beating (hung, or stopped with SIGSTOP).
    r#"
    INSERT INTO meta (key, value) VALUES ('writer_beat_ms', 0);
    "#,
    // 3: where the writing server serves (its `--advertise-url`): the servers standing by
    // forward their requests there.
    r#"
    CREATE TABLE writer (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        url text NOT NULL DEFAULT ''
    );
    INSERT INTO writer DEFAULT VALUES;
    "#,
];

/// What migrating found.
#[derive(Debug)]
pub(super) enum Migrated {
    /// The schema is this build's.
    Current,
    /// A newer build's schema, at this version: this build must not write it.
    Newer(i64),
}

/// Runs the migrations `client`'s database has not had, in one transaction.
pub(super) async fn migrate(client: &mut Client) -> Result<Migrated, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // `IF NOT EXISTS` on a migrated database is no news: not a NOTICE in every server's log.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATING])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS offload_migrations (
             version bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let done: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM offload_migrations",
            &[],
        )
        .await?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if done > known {
        return Ok(Migrated::Newer(done));
    }
    for (version, migration) in (1i64..).zip(MIGRATIONS).skip(done as usize) {
        tx.batch_execute(migration).await?;
        tx.execute(
            "INSERT INTO offload_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Migrated::Current)
}

/// How many migrations this build knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.len() as i64
}
