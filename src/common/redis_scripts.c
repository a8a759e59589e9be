/* redis_scripts.c — the cluster's Lua scripts (see redis_scripts.h). Each
 * runs atomically in Redis: that is what makes a history append, its
 * duplicate check, its seq and its routing one step, and a claim and the
 * seq a new connection replays up to another. Numbers that reach strings go
 * through string.format('%d') (Lua's tostring would print 1e15 as 1e+15). */
#include "src/common/redis_scripts.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

/* Shared by the scripts that read entries: expired(meta) with ttl and now
 * set from their arguments (ttl 0: never). */
#define PRELUDE                                                                          \
    "local function int(x) return string.format('%d', x) end\n"                         \
    "local ttl, now = 0, 0\n"                                                            \
    "local function expired(meta)\n"                                                     \
    "  if ttl == 0 then return false end\n"                                              \
    "  local acc = tonumber(string.match(meta, '^%d+ (%d+)'))\n"                         \
    "  return acc == nil or acc + ttl <= now\n"                                          \
    "end\n"                                                                              \
    "local function holder(v)\n"                                                         \
    "  if not v then return nil end\n"                                                   \
    "  return string.match(v, '^(.+)|(%d+)$')\n"                                         \
    "end\n"                                                                              \
    "local function alive(inst)\n"                                                       \
    "  return redis.call('EXISTS', 'wsn:live:' .. inst) == 1\n"                          \
    "end\n"

/* ARGV: self, history_size, ttl_ms, now_ms, then per item (RAPPEND_FIELDS):
 * (Expired entries are dropped from the front of a user's history on every
 * eighth append, up to 16: readers skip them meanwhile, and the keys expire
 * a ttl after the user's last append.) A re-used caller id's old state goes.
 * user, id, check_duplicate, accepted_ns, accepted_ms, push, route, json.
 * Returns per item: status, seq, route result, holder generation. */
static const char append_lua[] = PRELUDE
    "local self, hsize = ARGV[1], tonumber(ARGV[2])\n"
    "ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local out = {}\n"
    "for b = 5, #ARGV, 8 do\n"
    "  local u, id, dupc, accns, accms, push, route, json =\n"
    "    ARGV[b], ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4], ARGV[b+5], ARGV[b+6], ARGV[b+7]\n"
    "  local h, d = 'wsn:h:' .. u, 'wsn:d:' .. u\n"
    "  local status, seq = 3, 0\n"
    "  if hsize > 0 then\n"
    "    local meta = false\n"
    "    if dupc == '1' then meta = redis.call('HGET', d, id .. ':m') end\n"
    "    if meta and not expired(meta) then\n"
    "      status = 2\n"
    "    else\n"
    "      seq = redis.call('INCR', 'wsn:seq')\n"
    "      if dupc == '1' then redis.call('HDEL', d, id .. ':s') end\n"
    "      redis.call('ZADD', h, seq, id)\n"
    "      redis.call('HSET', d, id, json, id .. ':m', int(seq) .. ' ' .. accms .. ' ' .. push .. ' ' .. self)\n"
    "      local count = redis.call('ZCARD', h)\n"
    "      if count > hsize then\n"
    "        local old = redis.call('ZPOPMIN', h, count - hsize)\n"
    "        for j = 1, #old, 2 do redis.call('HDEL', d, old[j], old[j] .. ':m', old[j] .. ':s') end\n"
    "      end\n"
    "      for j = 1, (ttl > 0 and seq % 8 == 0) and 16 or 0 do\n"
    "        local first = redis.call('ZRANGE', h, 0, 0)\n"
    "        if #first == 0 then break end\n"
    "        local m = redis.call('HGET', d, first[1] .. ':m')\n"
    "        if m and not expired(m) then break end\n"
    "        redis.call('ZREM', h, first[1])\n"
    "        redis.call('HDEL', d, first[1], first[1] .. ':m', first[1] .. ':s')\n"
    "      end\n"
    "      if ttl > 0 then redis.call('PEXPIRE', h, ttl); redis.call('PEXPIRE', d, ttl) end\n"
    "      status = 1\n"
    "    end\n"
    "  end\n"
    "  local rr, gen = 0, 0\n"
    "  if status ~= 2 and route ~= '0' then\n"
    "    local inst, g = holder(redis.call('GET', 'wsn:o:' .. u))\n"
    "    if inst == self then\n"
    "      if route == '2' then rr = 3; gen = tonumber(g) end\n"
    "    elseif inst then\n"
    "      rr = 2\n"
    "      if alive(inst) then\n"
    "        local msg = 'N ' .. u .. ' ' .. g .. ' ' .. id .. ' ' .. int(seq) .. ' ' .. accns .. '\\n' .. json\n"
    "        if redis.call('PUBLISH', 'wsn:n:' .. inst, msg) > 0 then rr = 1 end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = status; out[#out + 1] = seq; out[#out + 1] = rr; out[#out + 1] = gen\n"
    "end\n"
    "return out\n";

/* ARGV: self, then per mark: user, id, state (2 sent, 3 acked), at_ms.
 * Returns one RMARK_* per mark. An ack is published to the node that
 * accepted the notification (its wait_ack_ms caller waits there). */
static const char mark_lua[] = PRELUDE
    "local self = ARGV[1]\n"
    "local out = {}\n"
    "for b = 2, #ARGV, 4 do\n"
    "  local u, id, st, at = ARGV[b], ARGV[b+1], tonumber(ARGV[b+2]), ARGV[b+3]\n"
    "  local d = 'wsn:d:' .. u\n"
    "  local meta = redis.call('HGET', d, id .. ':m')\n"
    "  local r = 0\n"
    "  if meta then\n"
    "    local cur = redis.call('HGET', d, id .. ':s')\n"
    "    local curst = 1\n"
    "    if cur then curst = tonumber(string.sub(cur, 1, 1)) end\n"
    "    if st > curst then\n"
    "      r = 1\n"
    "      if st == 3 then\n"
    "        redis.call('HSET', d, id .. ':s', '3 ' .. at)\n"
    "        local origin = string.match(meta, '^%d+ %d+ %d (.+)$')\n"
    "        if origin == self then\n"
    "          r = 3\n"
    "        elseif origin and alive(origin) then\n"
    "          redis.call('PUBLISH', 'wsn:n:' .. origin, 'A ' .. u .. ' ' .. id .. ' ' .. at)\n"
    "        end\n"
    "      else\n"
    "        redis.call('HSET', d, id .. ':s', '2')\n"
    "      end\n"
    "    else\n"
    "      r = 2\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = r\n"
    "end\n"
    "return out\n";

/* ARGV: pairs of user, holder ("INSTANCE|GEN"): each deleted only if it is
 * still the holder. Returns how many were. */
static const char release_lua[] =
    "local n = 0\n"
    "for b = 1, #ARGV, 2 do\n"
    "  local key = 'wsn:o:' .. ARGV[b]\n"
    "  if redis.call('GET', key) == ARGV[b+1] then redis.call('DEL', key); n = n + 1 end\n"
    "end\n"
    "return n\n";

/* ARGV: self, then pairs of user, generation held here. Per user: 1 this
 * connection is (again) the holder, 0 a newer connection holds the user
 * (here, or on a live node): close this one. */
static const char announce_lua[] = PRELUDE
    "local self = ARGV[1]\n"
    "local out = {}\n"
    "for b = 2, #ARGV, 2 do\n"
    "  local u, g = ARGV[b], ARGV[b+1]\n"
    "  local key, me = 'wsn:o:' .. u, self .. '|' .. g\n"
    "  local o = redis.call('GET', key)\n"
    "  local r = 1\n"
    "  if o and o ~= me then\n"
    "    local inst, og = holder(o)\n"
    "    if inst == self then\n"
    "      if tonumber(og) > tonumber(g) then r = 0 end\n"
    "    elseif inst and alive(inst) then\n"
    "      r = 0\n"
    "    end\n"
    "  end\n"
    "  if r == 1 and o ~= me then redis.call('SET', key, me) end\n"
    "  out[#out + 1] = r\n"
    "end\n"
    "return out\n";

/* ARGV: self, generation, user. The connection becomes the holder unless a
 * newer one of this node already is. Returns {seq now (what it replays up
 * to), the previous holder or "", receivers of the eviction published to
 * the previous holder's node, 1 when superseded}. */
static const char claim_lua[] = PRELUDE
    "local self, g, u = ARGV[1], ARGV[2], ARGV[3]\n"
    "local key, me = 'wsn:o:' .. u, self .. '|' .. g\n"
    "local prev = redis.call('GET', key)\n"
    "local seq = tonumber(redis.call('GET', 'wsn:seq') or '0')\n"
    "local inst, pg = holder(prev)\n"
    "if inst == self and tonumber(pg) > tonumber(g) then return {seq, prev, 0, 1} end\n"
    "redis.call('SET', key, me)\n"
    "local ev = 0\n"
    "if inst and inst ~= self and alive(inst) then\n"
    "  ev = redis.call('PUBLISH', 'wsn:n:' .. inst, 'E ' .. u .. ' ' .. pg .. ' ' .. self .. ' ' .. g)\n"
    "end\n"
    "return {seq, prev or '', ev, 0}\n";

/* ARGV: user, mode (A: after after_id, U: never sent), after_id, after_seq,
 * upto ("" on the first chunk), limit (entries scanned), now_ms, ttl_ms,
 * self, generation, max_bytes (a chunk stops after the entry that reaches it).
 * The first chunk takes the snapshot seq S and publishes a barrier to this
 * node (every routed notification published before it arrives before it).
 * Returns {S, recovered (1, 0, or -1 after the first chunk), more, last seq
 * scanned, then id, seq, json per entry}. */
static const char replay_lua[] = PRELUDE
    "local u, mode, after_id, upto, limit = ARGV[1], ARGV[2], ARGV[3], ARGV[5], tonumber(ARGV[6])\n"
    "local after_seq = tonumber(ARGV[4])\n"
    "ttl, now = tonumber(ARGV[8]), tonumber(ARGV[7])\n"
    "local h, d = 'wsn:h:' .. u, 'wsn:d:' .. u\n"
    "local S, rec\n"
    "if upto == '' then\n"
    "  S = tonumber(redis.call('GET', 'wsn:seq') or '0')\n"
    "  rec = -1\n"
    "  after_seq = 0\n"
    "  if mode == 'A' then\n"
    "    rec = 1\n"
    "    if after_id ~= '0' then\n"
    "      local meta = redis.call('HGET', d, after_id .. ':m')\n"
    "      if meta and not expired(meta) then\n"
    "        after_seq = tonumber(string.match(meta, '^(%d+)'))\n"
    "      else\n"
    "        rec = 0\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  redis.call('PUBLISH', 'wsn:n:' .. ARGV[9], 'W ' .. u .. ' ' .. ARGV[10])\n"
    "else\n"
    "  S = tonumber(upto)\n"
    "  rec = -1\n"
    "end\n"
    "local out = {S, rec, 0, after_seq}\n"
    "local ids = redis.call('ZRANGEBYSCORE', h, '(' .. int(after_seq), int(S), 'WITHSCORES', 'LIMIT', 0, limit)\n"
    "local bytes, max_bytes = 0, tonumber(ARGV[11])\n"
    "if #ids == 2 * limit then out[3] = 1 end\n"
    "for j = 1, #ids, 2 do\n"
    "  local id, seq = ids[j], tonumber(ids[j+1])\n"
    "  out[4] = seq\n"
    "  local v = redis.call('HMGET', d, id, id .. ':m', id .. ':s')\n"
    "  if v[1] and v[2] and not expired(v[2]) then\n"
    "    local push = string.match(v[2], '^%d+ %d+ (%d)')\n"
    "    if mode == 'A' or (push == '1' and not v[3]) then\n"
    "      out[#out + 1] = id; out[#out + 1] = seq; out[#out + 1] = v[1]\n"
    "      bytes = bytes + #v[1]\n"
    "      if bytes >= max_bytes and j + 1 < #ids then out[3] = 1; break end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ARGV: user, id, now_ms, ttl_ms. Returns {} when absent (or expired), else
 * {state, accepted_ms, acked_ms ("0" unless acked)}. */
static const char status_lua[] = PRELUDE
    "ttl, now = tonumber(ARGV[4]), tonumber(ARGV[3])\n"
    "local d, id = 'wsn:d:' .. ARGV[1], ARGV[2]\n"
    "local v = redis.call('HMGET', d, id .. ':m', id .. ':s')\n"
    "if not v[1] or expired(v[1]) then return {} end\n"
    "local acc = string.match(v[1], '^%d+ (%d+)')\n"
    "local st, at = 1, '0'\n"
    "if v[2] then\n"
    "  st = tonumber(string.sub(v[2], 1, 1))\n"
    "  at = string.match(v[2], '^3 (%d+)') or '0'\n"
    "end\n"
    "return {st, acc, at}\n";

/* ARGV: count, floor. Returns the first id of a block of count, never
 * below floor (the time base: an emptied Redis does not hand out old ids
 * again), never past 2^53 - 1. */
static const char ids_lua[] = PRELUDE
    "local count, floor = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local cur = tonumber(redis.call('GET', 'wsn:id') or '0')\n"
    "if cur < floor then cur = floor end\n"
    "if cur + count > 9007199254740991 then return redis.error_reply('ids exhausted') end\n"
    "redis.call('SET', 'wsn:id', int(cur + count))\n"
    "return cur\n";

static const char *const sources[RSCRIPT_COUNT] = {
    [RSCRIPT_APPEND] = append_lua,   [RSCRIPT_MARK] = mark_lua,
    [RSCRIPT_RELEASE] = release_lua, [RSCRIPT_ANNOUNCE] = announce_lua,
    [RSCRIPT_CLAIM] = claim_lua,     [RSCRIPT_REPLAY] = replay_lua,
    [RSCRIPT_STATUS] = status_lua,   [RSCRIPT_IDS] = ids_lua,
};

const char *redis_script_source(redis_script s) { return sources[s]; }

void redis_script_sha(redis_script s, char out[REDIS_SHA_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)sources[s], strlen(sources[s]), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[REDIS_SHA_HEX] = '\0';
}

void redis_node_channel(char *out, const char *instance)
{
    snprintf(out, REDIS_NAME_MAX, "wsn:n:%s", instance);
}

void redis_live_key(char *out, const char *instance)
{
    snprintf(out, REDIS_NAME_MAX, "wsn:live:%s", instance);
}
