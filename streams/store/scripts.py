"""The Lua scripts a worker runs: the commit (compare-and-set, outbox, indexes, progress)
and the load, one call per partition, every key in the partition's slot."""

from __future__ import annotations

#: Writes one partition's part of a batch atomically, customer by customer (every key it
#: touches carries the partition's hash tag: one Redis Cluster slot). Each customer's state is
#: written only if its stored revision is the one the worker computed from (compare-and-
#: set); then, and only then, its action doc, outbox (segment changes and action
#: messages), segment indexes, RFM histograms, action decision records and timer are
#: updated. An event id already in the customer's id set (an event produced again, at
#: new offsets: a second replay) rejects the write too, returning the ids seen, so the
#: worker folds again without them. KEYS holds every key touched; ARGV[1] is the batch
#: as JSON, ARGV[5] the documents and outbox entries end to end, each referred to by
#: its first and last byte (see ``_queue_commit``).
#:
#: Lua fragments of the commit script, on a decoded ``progress``: ``k`` the KEYS index
#: of the partition's progress hash, ``x`` the offsets this worker recorded before,
#: ``a`` those this call applied. The check refuses the whole call when Redis holds
#: less than ``x``; the record runs only if ``all_ok``.
PROGRESS_CHECK_LUA = """if progress.k then
  for field, pos in pairs(progress.x) do
    if tonumber(redis.call('HGET', KEYS[progress.k], field) or '-1') < tonumber(pos) then
      return redis.error_reply('SEGSTREAM_PROGRESS_LOST ' .. field)
    end
  end
end
"""
PROGRESS_RECORD_LUA = """if progress.k and all_ok then
  for field, pos in pairs(progress.a) do
    if tonumber(redis.call('HGET', KEYS[progress.k], field) or '-1') < tonumber(pos) then
      redis.call('HSET', KEYS[progress.k], field, pos)
    end
  end
end
"""

#: Partition progress (the last ARGV, JSON): ``a`` the input offsets this batch applied
#: ("<topic>:<partition>" -> offset), recorded in ``<p>:applied`` only when every write
#: won, so the record never runs ahead of the states; ``x`` the offsets this worker last
#: recorded. A stored record below ``x`` means Redis lost writes (a restart from an AOF
#: that missed its last second): the script then writes nothing and fails with
#: SEGSTREAM_PROGRESS_LOST, and the worker replays from what Redis has.
COMMIT_LUA = (
    """
local arg = cjson.decode(ARGV[1])
local writes = arg.w
local keep = tonumber(ARGV[2])
local retention = tonumber(ARGV[4])
local blob = ARGV[5]
local progress = cjson.decode(ARGV[#ARGV])
"""
    + PROGRESS_CHECK_LUA
    + """local sub, unpack = string.sub, unpack
-- One command for a list of arguments, in chunks Lua's unpack can take; the last reply.
local function many(cmd, key, list)
  local reply
  for i = 1, #list, 4000 do
    local j = math.min(i + 3999, #list)
    if key then reply = redis.call(cmd, key, unpack(list, i, j))
    else reply = redis.call(cmd, unpack(list, i, j)) end
  end
  return reply
end
local function push(t, k, v)
  local l = t[k]
  if not l then l = {}; t[k] = l end
  l[#l + 1] = v
end
if #arg.d > 0 then
  local gone = {}
  for _, k in ipairs(arg.d) do gone[#gone + 1] = KEYS[k] end
  many('DEL', nil, gone)
end
local all_ok = true
local out = {}
-- Moves in keys shared by the partition's customers, gathered and applied once after the
-- loop: each customer has one write a call, so none of them depends on another's order.
local adds, rems, hist, joined, due, undue = {}, {}, {}, {}, {}, {}
for i, w in ipairs(writes) do
  local skey = KEYS[w.s]
  local rev = redis.call('HGET', skey, 'rev') or '0'
  local seen = {}
  if rev == w.r and w.e then
    local hits = redis.call('SMISMEMBER', KEYS[w.ek], unpack(w.e))
    for j, hit in ipairs(hits) do
      if hit == 1 then seen[#seen + 1] = w.e[j] end
    end
  end
  if rev ~= w.r then
    all_ok = false
    local now = redis.call('HMGET', skey, 'doc', 'act')
    out[i] = {0, rev, now[1] or '', now[2] or ''}
  elseif #seen > 0 then
    all_ok = false
    local now = redis.call('HMGET', skey, 'doc', 'act')
    out[i] = {2, rev, now[1] or '', now[2] or '', seen}
  else
    if w.e then
      redis.call('SADD', KEYS[w.ek], unpack(w.e))
      redis.call('EXPIRE', KEYS[w.ek], retention)
    end
    local new = tonumber(rev) + 1
    local d = w.d
    if w.a then
      redis.call('HSET', skey, 'doc', sub(blob, d[1], d[2]), 'rev', new,
        'act', sub(blob, w.a[1], w.a[2]))
    else redis.call('HSET', skey, 'doc', sub(blob, d[1], d[2]), 'rev', new) end
    if w.o then
      local okey, o, entries = KEYS[w.ok], w.o, {}
      for j = 1, #o, 2 do entries[#entries + 1] = sub(blob, o[j], o[j + 1]) end
      if many('RPUSH', okey, entries) > keep then redis.call('LTRIM', okey, -keep, -1) end
      redis.call('EXPIRE', okey, 86400)
    end
    if w.x then
      for _, op in ipairs(w.x) do push(op[1] == 1 and adds or rems, op[2], w.c) end
    end
    if w.h then
      for _, op in ipairs(w.h) do
        local h = hist[op[1]]
        if not h then h = {}; hist[op[1]] = h end
        h[op[2]] = (h[op[2]] or 0) + op[3]
      end
    end
    if w.m then joined[#joined + 1] = w.c end
    if w.g then
      for _, g in ipairs(w.g) do
        redis.call('HSETNX', KEYS[g[1]], w.c, g[2])
        redis.call('SADD', KEYS[g[3]], g[4])
      end
    end
    if w.u then
      for _, u in ipairs(w.u) do
        redis.call('HINCRBY', KEYS[u[1]], u[2], 1)
        redis.call('SADD', KEYS[u[3]], u[4])
      end
    end
    if w.due then
      due[#due + 1] = w.due
      due[#due + 1] = w.c
    else undue[#undue + 1] = w.c end
    out[i] = new
  end
end
for k, cids in pairs(rems) do many('SREM', KEYS[k], cids) end
local used = {}
for k, cids in pairs(adds) do
  many('SADD', KEYS[k], cids)
  used[#used + 1] = KEYS[k]
end
if #used > 0 then many('SADD', KEYS[tonumber(ARGV[3])], used) end
-- Summed per bucket: the net move, applied even when zero (+1 then -1 leaves "0").
for k, buckets in pairs(hist) do
  for bucket, delta in pairs(buckets) do redis.call('HINCRBY', KEYS[k], bucket, delta) end
end
if #joined > 0 then many('SADD', KEYS[arg.m], joined) end
if #due > 0 then many('ZADD', KEYS[arg.t], due) end
if #undue > 0 then many('ZREM', KEYS[arg.t], undue) end
"""
    + PROGRESS_RECORD_LUA
    + """
return out
"""
)

#: Outbox entries kept per customer at most (segment changes and action messages).
OUTBOX_KEEP = 32

#: Reads customers of one partition: KEYS are (state hash, outbox) pairs; each reply is
#: [rev, doc, act, outbox entries] ('' for what is missing).
LOAD_LUA = """
local out = {}
for i = 1, #KEYS, 2 do
  local h = redis.call('HMGET', KEYS[i], 'rev', 'doc', 'act')
  out[#out + 1] = {h[1] or '', h[2] or '', h[3] or '', redis.call('LRANGE', KEYS[i + 1], 0, -1)}
end
return out
"""
