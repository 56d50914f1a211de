package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSchema is the PostgreSQL side: a codes table that is the list (seq is
// the import order), and an assignments table that is the ledger, unique
// per (send, recipient) for retries and per code for "who got C", with an
// index by recipient for their history.
const pgSchema = `
DROP FUNCTION IF EXISTS allocate(int, text, text[]);
DROP TABLE IF EXISTS assignments;
DROP TABLE IF EXISTS codes;
CREATE TABLE codes (
  list_id int     NOT NULL,
  seq     bigint  NOT NULL,
  code    text    NOT NULL,
  used    boolean NOT NULL DEFAULT false,
  PRIMARY KEY (list_id, seq),
  UNIQUE (list_id, code)
);
-- the queue of free codes, in import order
CREATE INDEX codes_free ON codes (list_id, seq) WHERE NOT used;
CREATE TABLE assignments (
  send_id     text        NOT NULL,
  recipient   text        NOT NULL,
  list_id     int         NOT NULL,
  code        text        NOT NULL,
  assigned_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (send_id, recipient),
  UNIQUE (list_id, code)
);
CREATE INDEX assignments_recipient ON assignments (recipient);

-- One allocation in one statement: the recipients this send already has
-- keep their codes; the others take the next free codes, in recipient
-- order, by UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED
-- LIMIT n) RETURNING. Too few free codes raises, which rolls back all.
-- Concurrent calls never wait on each other's codes (SKIP LOCKED); two
-- calls for the same (send, recipient) at once make the second fail on
-- the primary key, and the client runs it again.
CREATE FUNCTION allocate(p_list int, p_send text, p_rcpts text[])
RETURNS TABLE (o_recipient text, o_code text) LANGUAGE plpgsql AS $fn$
DECLARE
  v_want int;
  v_got  int;
BEGIN
  SELECT count(DISTINCT r) INTO v_want FROM unnest(p_rcpts) AS r;
  RETURN QUERY
  WITH req AS (
    SELECT t.r, min(t.ord) AS ord
    FROM unnest(p_rcpts) WITH ORDINALITY AS t(r, ord) GROUP BY t.r
  ), known AS (
    -- one primary-key probe per recipient; a join on the whole send
    -- can get a plan that reads every row of a big send for each call
    SELECT q.r, q.ord, k.code FROM req q
    LEFT JOIN LATERAL (SELECT a.code FROM assignments a
                       WHERE a.send_id = p_send AND a.recipient = q.r) k ON true
  ), missing AS (
    SELECT m.r, row_number() OVER (ORDER BY m.ord) AS rn FROM known m WHERE m.code IS NULL
  ), taken AS (
    -- "= ANY (ARRAY(...))" is "IN (...)" with a plan that probes the
    -- primary key: the planner cannot size a LIMIT that comes from a
    -- subquery, and with IN it hash-joins against the whole table
    UPDATE codes c SET used = true
    WHERE c.list_id = p_list AND c.seq = ANY (ARRAY(
      SELECT f.seq FROM codes f WHERE f.list_id = p_list AND NOT f.used
      ORDER BY f.seq LIMIT (SELECT count(*) FROM missing)
      FOR UPDATE SKIP LOCKED))
    RETURNING c.seq, c.code
  ), added AS (
    INSERT INTO assignments (send_id, recipient, list_id, code)
    SELECT p_send, m.r, p_list, t.code
    FROM (SELECT x.code, row_number() OVER (ORDER BY x.seq) AS rn FROM taken x) t
    JOIN missing m ON m.rn = t.rn
    RETURNING assignments.recipient, assignments.code
  )
  SELECT k.r, k.code FROM known k WHERE k.code IS NOT NULL
  UNION ALL
  SELECT a.recipient, a.code FROM added a;
  GET DIAGNOSTICS v_got = ROW_COUNT;
  IF v_got < v_want THEN
    RAISE EXCEPTION 'insufficient codes: % of % recipients', v_got, v_want
      USING ERRCODE = 'CP001';
  END IF;
END
$fn$;
`

// pgInsufficient is allocate's SQLSTATE for too few free codes.
const pgInsufficient = "CP001"

// pgStore runs the schema above; its durability is synchronous_commit.
type pgStore struct {
	pool        *pgxpool.Pool
	importBatch int // rows per COPY, each COPY one transaction
}

func newPGStore(ctx context.Context, dsn string, conns int) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(conns)
	cfg.MinConns = int32(conns) // every client has its connection before the clock starts
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &pgStore{pool: pool, importBatch: 10000}, nil
}

func (s *pgStore) reset(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, pgSchema)
	return err
}

func (s *pgStore) close() error { s.pool.Close(); return nil }

func (s *pgStore) importCodes(ctx context.Context, list int, first, n uint64, lat *latencies) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	// seq counts from the list's start, whatever the code indexes are.
	var seq int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(seq) + 1, 0) FROM codes WHERE list_id = $1", list).Scan(&seq); err != nil {
		return err
	}
	rows := make([][]any, 0, s.importBatch)
	for i := first; i < first+n; {
		rows = rows[:0]
		for ; i < first+n && len(rows) < s.importBatch; i++ {
			rows = append(rows, []any{int32(list), seq, code(i)})
			seq++
		}
		t0 := time.Now()
		if _, err := conn.CopyFrom(ctx, pgx.Identifier{"codes"}, []string{"list_id", "seq", "code"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		*lat = append(*lat, time.Since(t0))
	}
	return nil
}

// afterImport is what an operator does after a bulk load, outside the
// import's time: fresh statistics, so allocations get index plans from
// their first call.
func (s *pgStore) afterImport(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "VACUUM ANALYZE codes")
	return err
}

func (s *pgStore) allocate(ctx context.Context, list int, send string, rcpts []string) ([]string, error) {
	for attempt := 0; ; attempt++ {
		got, err := s.allocateOnce(ctx, list, send, rcpts)
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch {
			case pe.Code == pgInsufficient:
				return nil, fmt.Errorf("%w: %s", errInsufficient, pe.Message)
			case pe.Code == "23505" && attempt < 3:
				// The same (send, recipient) was assigned by a call that
				// committed meanwhile: run again, it now finds that code.
				continue
			}
		}
		return got, err
	}
}

func (s *pgStore) allocateOnce(ctx context.Context, list int, send string, rcpts []string) ([]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT o_recipient, o_code FROM allocate($1, $2, $3)", list, send, rcpts)
	if err != nil {
		return nil, err
	}
	byRcpt := make(map[string]string, len(rcpts))
	var r, c string
	if _, err := pgx.ForEachRow(rows, []any{&r, &c}, func() error { byRcpt[r] = c; return nil }); err != nil {
		return nil, err
	}
	out := make([]string, len(rcpts))
	for i, x := range rcpts {
		v, ok := byRcpt[x]
		if !ok {
			return nil, fmt.Errorf("no code for recipient %q", x)
		}
		out[i] = v
	}
	return out, nil
}

func (s *pgStore) counts(ctx context.Context, list int) (counts, error) {
	var c counts
	err := s.pool.QueryRow(ctx, `SELECT
	  (SELECT count(*) FROM codes WHERE list_id = $1 AND NOT used),
	  count(*), count(DISTINCT code), count(DISTINCT (send_id, recipient))
	FROM assignments WHERE list_id = $1`, list).Scan(&c.free, &c.assigned, &c.distinctCodes, &c.distinctPairs)
	return c, err
}

func (s *pgStore) footprint(ctx context.Context) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, "SELECT pg_total_relation_size('codes') + pg_total_relation_size('assignments')").Scan(&n)
	return n, err
}

func (s *pgStore) footprintKind() string { return "disk" }

// history reads a recipient's codes by send (for the tests).
func (s *pgStore) history(ctx context.Context, rcpt string) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, "SELECT send_id, code FROM assignments WHERE recipient = $1", rcpt)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	var send, c string
	_, err = pgx.ForEachRow(rows, []any{&send, &c}, func() error { m[send] = c; return nil })
	return m, err
}

// syncCommit reports the server's setting, for the result lines.
func (s *pgStore) syncCommit(ctx context.Context) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, "SELECT current_setting('synchronous_commit')").Scan(&v)
	return "synchronous_commit=" + strings.ToLower(v), err
}
