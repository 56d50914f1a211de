package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// allocLua is one allocation, atomic as every Redis script is. It does what
// coupond's allocation does: the send's recipients that already have a code
// get it again (idempotency), the others get the next codes of the list, and
// the script records who got which code three ways: per (send, recipient)
// for retries, per code ("who got C", and where a code handed out twice
// would show), and per recipient (their history across sends).
//
// KEYS: 1 the list of free codes, 2 hash "send\nrecipient" -> code,
// 3 hash code -> "send\nrecipient", 4 the list's assignment counter.
// ARGV: 1 the send, 2 the prefix of the per-recipient history hashes
// (recipient's hash: field send -> code), 3.. the recipients.
// The history keys are not declared in KEYS: that is fine on one instance,
// which is what this measures, not on a Redis Cluster.
const allocLua = `
local codes, sent, bycode, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local send, hist = ARGV[1], ARGV[2]
local n = #ARGV - 2
local step = 1000 -- unpack() is bounded by Lua's stack: work in slices
local out, fresh, first = {}, {}, {}
for s = 1, n, step do
  local e = math.min(s + step - 1, n)
  local f = {}
  for i = s, e do f[#f + 1] = send .. '\n' .. ARGV[i + 2] end
  local had = redis.call('HMGET', sent, unpack(f))
  for j = 1, #had do
    local i = s + j - 1
    local r = ARGV[i + 2]
    if had[j] then
      out[i] = had[j]
    elseif not first[r] then
      first[r] = i
      fresh[#fresh + 1] = i
    end
  end
end
local m = #fresh
if m > 0 then
  local free = redis.call('LLEN', codes)
  if free < m then
    return redis.error_reply('INSUFFICIENT_CODES ' .. m .. ' needed, ' .. free .. ' free')
  end
  local got = redis.call('LPOP', codes, m)
  for s = 1, m, step do
    local e = math.min(s + step - 1, m)
    local a, b = {}, {}
    for k = s, e do
      local i = fresh[k]
      local r, c = ARGV[i + 2], got[k]
      local key = send .. '\n' .. r
      out[i] = c
      a[#a + 1] = key; a[#a + 1] = c
      b[#b + 1] = c; b[#b + 1] = key
      redis.call('HSET', hist .. r, send, c)
    end
    redis.call('HSET', sent, unpack(a))
    redis.call('HSET', bycode, unpack(b))
  end
  redis.call('INCRBY', counter, m)
end
for i = 1, n do
  if not out[i] then out[i] = out[first[ARGV[i + 2]]] end -- a recipient named twice
end
return out
`

var allocScript = redis.NewScript(allocLua)

// historyPrefix starts the key of a recipient's history hash.
const historyPrefix = "h:"

// redisKeys are a list's keys, in allocLua's KEYS order.
func redisKeys(list int) []string {
	p := "{L" + strconv.Itoa(list) + "}:"
	return []string{p + "codes", p + "sent", p + "bycode", p + "assigned"}
}

// redisStore keeps the codes in a LIST and allocates with allocLua. Its
// durability is the server's appendfsync setting.
type redisStore struct {
	rdb *redis.Client
	// importBatch codes per RPUSH, importPipeline RPUSHes per round trip.
	importBatch, importPipeline int
}

func newRedisStore(ctx context.Context, addr string, conns int) (*redisStore, error) {
	rdb := redis.NewClient(&redis.Options{
		Addr:            addr,
		PoolSize:        conns,
		ReadTimeout:     time.Minute, // a 10,000-recipient call under AOF always is slow on a busy disk
		WriteTimeout:    time.Minute,
		DisableIdentity: true, // CLIENT SETINFO is Redis 7.2+, Debian 12 has 7.0
	})
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	return &redisStore{rdb: rdb, importBatch: 1000, importPipeline: 10}, nil
}

// reset empties the server: this program starts its own instance.
func (s *redisStore) reset(ctx context.Context) error {
	if err := s.rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	return allocScript.Load(ctx, s.rdb).Err()
}

func (s *redisStore) close() error { return s.rdb.Close() }

func (s *redisStore) importCodes(ctx context.Context, list int, first, n uint64, lat *latencies) error {
	key := redisKeys(list)[0]
	end := first + n
	for i := first; i < end; {
		p := s.rdb.Pipeline()
		for range s.importPipeline {
			if i >= end {
				break
			}
			m := min(uint64(s.importBatch), end-i)
			args := make([]any, m)
			for k := range args {
				args[k] = code(i + uint64(k))
			}
			p.RPush(ctx, key, args...)
			i += m
		}
		t0 := time.Now()
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		*lat = append(*lat, time.Since(t0))
	}
	return nil
}

func (s *redisStore) allocate(ctx context.Context, list int, send string, rcpts []string) ([]string, error) {
	args := make([]any, 0, len(rcpts)+2)
	args = append(args, send, historyPrefix)
	for _, r := range rcpts {
		args = append(args, r)
	}
	got, err := allocScript.Run(ctx, s.rdb, redisKeys(list), args...).StringSlice()
	if err != nil {
		if strings.HasPrefix(err.Error(), "INSUFFICIENT_CODES") {
			return nil, fmt.Errorf("%w: %v", errInsufficient, err)
		}
		return nil, err
	}
	if len(got) != len(rcpts) {
		return nil, fmt.Errorf("%d codes for %d recipients", len(got), len(rcpts))
	}
	return got, nil
}

func (s *redisStore) counts(ctx context.Context, list int) (counts, error) {
	k := redisKeys(list)
	p := s.rdb.Pipeline()
	free := p.LLen(ctx, k[0])
	pairs := p.HLen(ctx, k[1])
	codes := p.HLen(ctx, k[2])
	assigned := p.Get(ctx, k[3])
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return counts{}, err
	}
	n, err := assigned.Int64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return counts{}, err
	}
	return counts{free: free.Val(), assigned: n, distinctCodes: codes.Val(), distinctPairs: pairs.Val()}, nil
}

func (s *redisStore) footprint(ctx context.Context) (int64, error) {
	info, err := s.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

func (s *redisStore) footprintKind() string { return "ram" }

// history reads a recipient's codes by send (for the tests).
func (s *redisStore) history(ctx context.Context, rcpt string) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, historyPrefix+rcpt).Result()
}

// appendfsync reports the server's setting, for the result lines.
func (s *redisStore) appendfsync(ctx context.Context) (string, error) {
	m, err := s.rdb.ConfigGet(ctx, "appendfsync").Result()
	if err != nil {
		return "", err
	}
	if on, _ := s.rdb.ConfigGet(ctx, "appendonly").Result(); on["appendonly"] != "yes" {
		return "aof=off", nil
	}
	return "aof=" + m["appendfsync"], nil
}
