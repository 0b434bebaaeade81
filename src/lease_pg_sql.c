/*
 * The PostgreSQL lease store's statements (lease_pg_sql.h): the tables and
 * the one statement per operation.  What each table holds and why is
 * described at the top of lease_pg.c.
 */
#include "lease_pg_sql.h"

const char pg_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS leader_locks ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL, cluster_name TEXT NOT NULL DEFAULT '',"
    " metadata TEXT NOT NULL DEFAULT '{}', created_at TIMESTAMPTZ NOT NULL DEFAULT now(),"
    " updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), expires_at TIMESTAMPTZ NOT NULL,"
    " version BIGINT NOT NULL DEFAULT 1);"
    "CREATE TABLE IF NOT EXISTS highlander_lease_state ("
    " key TEXT PRIMARY KEY, epoch BIGINT NOT NULL, holder TEXT NOT NULL,"
    " until_at TIMESTAMPTZ NOT NULL, released BOOLEAN NOT NULL DEFAULT false);"
    "CREATE TABLE IF NOT EXISTS highlander_members ("
    " tenant TEXT NOT NULL, member TEXT NOT NULL, cluster_name TEXT NOT NULL,"
    " expires_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (tenant, member));"
    "ALTER TABLE highlander_lease_state ADD COLUMN IF NOT EXISTS foreign_holder BOOLEAN NOT NULL DEFAULT false;";

/* The store instance, last in the setup round trip: the system identifier
 * where this role may read it, and the postmaster's start time. */
const char pg_instance_sql[] =
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')"
    " THEN (SELECT system_identifier::text FROM pg_control_system()) ELSE '?' END,"
    " pg_postmaster_start_time()::text, current_database();";

/* The lock row and our state of key $1, and whether an absent (or
 * expired) lock is vouched for: an expired row is the store's own record;
 * else the state must show a release, an end that has passed, or that the
 * last lock was foreign.  A foreign row is one we did not write (ours carry
 * metadata '{}'; the Go controller's its JSON): the Go controller deletes
 * its row only to release it (or once expired), so its absence is a
 * release, not a loss; without this a follower would wait for the end of
 * Go's 100 s lock after every Go handover.  A lost state vouches for
 * nothing, Go's row or not. */
#define CUR_SQL \
    "WITH cur AS (SELECT value, cluster_name, expires_at, expires_at > now() AS live," \
    "  COALESCE(metadata, '') <> '{}' AS foreign_row FROM leader_locks WHERE key = $1)," \
    " st AS (SELECT epoch, holder, until_at, released, foreign_holder FROM highlander_lease_state" \
    "  WHERE key = $1)," \
    " v AS (SELECT (EXISTS (SELECT 1 FROM cur)" \
    "  OR EXISTS (SELECT 1 FROM st WHERE released OR foreign_holder OR until_at <= now()))::int AS vouched),"

/* A live lock we did not write (the Go controller's, or one whose state
 * was lost): the state learns its holder and end, so it can vouch later. */
#define SEEN_SQL \
    " seen AS (INSERT INTO highlander_lease_state AS s (key, epoch, holder, until_at, released, foreign_holder)" \
    "  SELECT $1, 0, value, expires_at, false, foreign_row FROM cur WHERE live" \
    "  ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder," \
    "  until_at = GREATEST(s.until_at, EXCLUDED.until_at), released = false," \
    "  foreign_holder = EXCLUDED.foreign_holder" \
    "  WHERE s.holder <> EXCLUDED.holder OR s.until_at < EXCLUDED.until_at OR s.released" \
    "  OR s.foreign_holder <> EXCLUDED.foreign_holder RETURNING 1)"

/* Rows: flag (1 won, 0 held, 2 absent and not taken), token, holder,
 * cluster, ttl ms, vouched. */
#define HELD_OR_ABSENT_SQL(won) \
    " SELECT 0, COALESCE((SELECT epoch FROM st WHERE holder = c.value), 0), c.value, c.cluster_name," \
    "  (extract(epoch FROM c.expires_at - now()) * 1000)::bigint, 0 FROM cur c" \
    "  WHERE c.live" won \
    " UNION ALL" \
    " SELECT 2, COALESCE((SELECT epoch FROM st), 0), '', '', -1, vouched FROM v" \
    "  WHERE NOT EXISTS (SELECT 1 FROM cur WHERE live)" won

/* $1 key, $2 id, $3 cluster, $4 ttl ms, $5 token floor, $6 take
 * (enum lease_take), $7 seen (lease.h).  The new epoch is above the state's and the floor;
 * the state row's own ON CONFLICT makes it strictly larger than any
 * epoch committed before, whatever the snapshot saw. */
const char pg_acquire_sql[] =
    CUR_SQL
    " go AS (SELECT NOT EXISTS (SELECT 1 FROM cur WHERE live) AND (($6::int >= 1 AND vouched = 1)"
    "  OR ($6::int = 2 AND COALESCE((SELECT epoch FROM st), 0) = $7::bigint"
    "  AND NOT EXISTS (SELECT 1 FROM st WHERE NOT released AND until_at > now()))) AS ok FROM v),"
    " won AS (INSERT INTO leader_locks AS l (key, value, cluster_name, metadata, created_at, updated_at,"
    "  expires_at, version)"
    "  SELECT $1, $2, $3, '{}', now(), now(), now() + $4::bigint * interval '1 millisecond', 1 FROM go WHERE ok"
    "  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, cluster_name = EXCLUDED.cluster_name,"
    "  metadata = '{}', created_at = now(), updated_at = now(), expires_at = EXCLUDED.expires_at,"
    "  version = l.version + 1 WHERE l.expires_at <= now() RETURNING l.expires_at),"
    " tok AS (INSERT INTO highlander_lease_state AS s (key, epoch, holder, until_at, released)"
    "  SELECT $1, GREATEST(COALESCE((SELECT epoch FROM st), 0), $5::bigint) + 1, $2, expires_at, false FROM won"
    "  ON CONFLICT (key) DO UPDATE SET epoch = GREATEST(s.epoch, $5::bigint) + 1, holder = EXCLUDED.holder,"
    "  until_at = EXCLUDED.until_at, released = false, foreign_holder = false RETURNING epoch),"
    SEEN_SQL
    " SELECT 1, epoch, $2, $3, $4::bigint, 1 FROM tok"
    " UNION ALL"
    HELD_OR_ABSENT_SQL(" AND NOT EXISTS (SELECT 1 FROM tok)");

/* $1 key, $2 id, $3 ttl ms, $4 token: ours while the row names us and no
 * later epoch was handed out; the state follows (and is rebuilt if lost). */
const char pg_renew_sql[] =
    "WITH r AS (UPDATE leader_locks SET updated_at = now(),"
    " expires_at = now() + $3::bigint * interval '1 millisecond', version = version + 1"
    " WHERE key = $1 AND value = $2"
    " AND NOT EXISTS (SELECT 1 FROM highlander_lease_state WHERE key = $1 AND epoch > $4::bigint)"
    " RETURNING expires_at),"
    " s AS (INSERT INTO highlander_lease_state AS s (key, epoch, holder, until_at, released)"
    " SELECT $1, $4::bigint, $2, expires_at, false FROM r"
    " ON CONFLICT (key) DO UPDATE SET epoch = GREATEST(s.epoch, EXCLUDED.epoch), holder = EXCLUDED.holder,"
    " until_at = GREATEST(s.until_at, EXCLUDED.until_at), released = false, foreign_holder = false RETURNING 1)"
    " SELECT 1 FROM r";

/* $1 key, $2 id, $3 token, $4 channel */
const char pg_release_sql[] =
    "WITH r AS (UPDATE leader_locks SET expires_at = now(), updated_at = now()"
    " WHERE key = $1 AND value = $2 AND expires_at > now()"
    " AND NOT EXISTS (SELECT 1 FROM highlander_lease_state WHERE key = $1 AND epoch > $3::bigint) RETURNING 1),"
    " s AS (UPDATE highlander_lease_state SET released = true, until_at = LEAST(until_at, now())"
    " WHERE key = $1 AND epoch = $3::bigint AND EXISTS (SELECT 1 FROM r) RETURNING 1)"
    " SELECT $3::bigint, pg_notify($4, 'released ' || $3) FROM r";

/* $1 key; the same rows as acquire, never flag 1. */
const char pg_observe_sql[] =
    CUR_SQL
    SEEN_SQL
    HELD_OR_ABSENT_SQL("");

/* $1 tenant, $2 member, $3 cluster, $4 ttl ms */
const char pg_members_sql[] =
    "WITH up AS (INSERT INTO highlander_members (tenant, member, cluster_name, expires_at)"
    " VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')"
    " ON CONFLICT (tenant, member) DO UPDATE SET cluster_name = EXCLUDED.cluster_name,"
    " expires_at = EXCLUDED.expires_at RETURNING cluster_name),"
    " gone AS (DELETE FROM highlander_members WHERE tenant = $1 AND expires_at < now() RETURNING 1)"
    " SELECT count(DISTINCT c) FROM (SELECT cluster_name AS c FROM highlander_members"
    "  WHERE tenant = $1 AND expires_at >= now() AND member <> $2 UNION SELECT cluster_name FROM up) s";
