// ioredis and node-redis at their defaults (both speak RESP3: HELLO 3, CLIENT SETINFO ...) run
// one workload against the Redis at 127.0.0.1:PORT and print every result as JSON, so that the
// output against a standalone redis-server and through the ambassador can be diffed:
//
//   mkdir /tmp/node-clients && cd /tmp/node-clients && npm install ioredis redis
//   NODE_PATH=/tmp/node-clients/node_modules node scripts/node-clients-parity.js PORT > out.json
//
// Start both servers empty (FLUSHALL, on each master for the ambassador). Not part of the test
// suite: CI has no Node.js packages. Last run: see docs/commands.md, "Client libraries".
const Redis = require("ioredis");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const out = [];
const rec = async (label, fn) => {
  try {
    const v = await fn();
    out.push([label, v === undefined ? null : v]);
  } catch (e) {
    out.push([label, "ERR " + e.message]);
  }
};

async function ioredis() {
  const r = new Redis({ host: "127.0.0.1", port });
  const sub = new Redis({ host: "127.0.0.1", port });
  await rec("io ping", () => r.ping());
  await rec("io set", () => r.set("io:k", "v", "EX", 100));
  await rec("io get", () => r.get("io:k"));
  await rec("io mset", () => r.mset({ "io:a": "1", "io:b": "2", "io:c": "3" }));
  await rec("io mget", () => r.mget("io:a", "io:b", "io:c", "io:none"));
  await rec("io hset", () => r.hset("io:h", { f1: "a", f2: "b" }));
  await rec("io hgetall", () => r.hgetall("io:h"));
  await rec("io zadd", () => r.zadd("io:z", 1.5, "a", 2, "b"));
  await rec("io zrange", () => r.zrange("io:z", 0, -1, "WITHSCORES"));
  await rec("io incrbyfloat", () => r.incrbyfloat("io:f", 0.1));
  await rec("io pipeline", async () => {
    const p = r.pipeline();
    for (let i = 0; i < 200; i++) p.set(`io:p${i}`, i).get(`io:p${i}`);
    p.lpush("io:k", "x");
    return (await p.exec()).map(([e, v]) => (e ? "ERR " + e.message : v));
  });
  await rec("io multi", () => r.multi().set("{io}t", 1).incr("{io}t").get("{io}t").exec());
  await rec("io eval", () => r.eval("return redis.call('GET', KEYS[1])", 1, "io:k"));
  await rec("io defineCommand", async () => {
    r.defineCommand("twice", { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], 2)" });
    return [await r.twice("io:c1"), await r.twice("io:c2"), await r.twice("io:c3")];
  });
  await rec("io xadd/xrange", async () => {
    await r.xadd("io:s", "1-1", "a", "1");
    return r.xrange("io:s", "-", "+");
  });
  await rec("io pubsub", async () => {
    const got = new Promise((resolve) => sub.on("message", (ch, msg) => resolve([ch, msg])));
    const count = await sub.subscribe("io:ch");
    const receivers = await r.publish("io:ch", "hello");
    return [count, receivers, await got];
  });
  await rec("io scan", async () => {
    const keys = [];
    let cursor = "0";
    do {
      const [next, batch] = await r.scan(cursor, "MATCH", "io:p*", "COUNT", 50);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== "0");
    return keys.length;
  });
  await rec("io dbsize", () => r.dbsize());
  sub.disconnect();
  r.disconnect();
}

async function nodeRedis() {
  const r = createClient({ socket: { host: "127.0.0.1", port } });
  r.on("error", (e) => out.push(["nr client error", e.message]));
  await r.connect();
  const sub = r.duplicate();
  await sub.connect();
  await rec("nr ping", () => r.ping());
  await rec("nr set", () => r.set("nr:k", "v", { EX: 100 }));
  await rec("nr get", () => r.get("nr:k"));
  await rec("nr mSet", () => r.mSet({ "nr:a": "1", "nr:b": "2", "nr:c": "3" }));
  await rec("nr mGet", () => r.mGet(["nr:a", "nr:b", "nr:c", "nr:none"]));
  await rec("nr hSet", () => r.hSet("nr:h", { f1: "a", f2: "b" }));
  await rec("nr hGetAll", async () => ({ ...(await r.hGetAll("nr:h")) }));
  await rec("nr zAdd", () => r.zAdd("nr:z", [{ score: 1.5, value: "a" }, { score: 2, value: "b" }]));
  await rec("nr zRangeWithScores", () => r.zRangeWithScores("nr:z", 0, -1));
  await rec("nr sAdd/sMembers", async () => {
    await r.sAdd("nr:s", ["x", "y"]);
    return (await r.sMembers("nr:s")).sort();
  });
  await rec("nr pipeline", async () => {
    const m = r.multi();
    for (let i = 0; i < 200; i++) m.set(`nr:p${i}`, String(i)).get(`nr:p${i}`);
    return m.execAsPipeline();
  });
  await rec("nr multi", () => r.multi().set("{nr}t", "1").incr("{nr}t").get("{nr}t").exec());
  await rec("nr eval", () => r.eval("return redis.call('GET', KEYS[1])", { keys: ["nr:k"] }));
  await rec("nr pubsub", async () => {
    let heard;
    const got = new Promise((resolve) => (heard = resolve));
    await sub.subscribe("nr:ch", (msg, ch) => heard([ch, msg])); // resolves once confirmed
    const receivers = await r.publish("nr:ch", "hello");
    return [receivers, await got];
  });
  await rec("nr dbsize", () => r.dbSize());
  await rec("nr info server has redis_mode", async () =>
    (await r.info("server")).includes("redis_mode:standalone"));
  await sub.quit();
  await r.quit();
}

(async () => {
  await ioredis();
  await nodeRedis();
  console.log(JSON.stringify(out, null, 1));
})().catch((e) => {
  console.error("FATAL", e);
  process.exit(1);
});
