/*
 * The PostgreSQL lease store's SQL (lease_pg_sql.c), used by lease_pg.c.
 * Parameters are listed above each statement there.
 */
#ifndef HIGHLANDER_LEASE_PG_SQL_H
#define HIGHLANDER_LEASE_PG_SQL_H

extern const char pg_schema_sql[];   /* tables, created when missing */
extern const char pg_instance_sql[]; /* the store instance, last of the setup */
extern const char pg_acquire_sql[];
extern const char pg_renew_sql[];
extern const char pg_release_sql[];
extern const char pg_observe_sql[];
extern const char pg_members_sql[];

#endif
