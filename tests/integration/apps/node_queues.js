// Node.js applications' habits through the ambassador (run by test_libraries.py):
// ioredis's and node-redis's multi() over keys in several slots, and a BullMQ queue whose keys carry a hash-tag
// prefix ("{bull}"), as BullMQ's own guide asks for on a Redis Cluster: a job added, run by a
// worker, its result awaited; a delayed job likewise. Prints one JSON line of what it saw.
const { Queue, QueueEvents, Worker } = require("bullmq");
const IORedis = require("ioredis");
const { createClient } = require("redis");

const [host, port, run] = [process.argv[2], Number(process.argv[3]), process.argv[4]];

async function ioredisMulti() {
  const client = new IORedis({ host, port });
  const keys = [0, 1, 2, 3].map((n) => `${run}:multi:${n}`);
  const multi = client.multi();
  keys.forEach((key, n) => multi.set(key, String(n)).incr(key));
  const replies = await multi.exec();
  const values = await client.mget(keys);
  await client.del(keys);
  client.disconnect();
  return { replies, values };
}

async function nodeRedisMulti() {
  const client = await createClient({ socket: { host, port } }).connect();
  const keys = [0, 1, 2, 3].map((n) => `${run}:node-redis:${n}`);
  const multi = client.multi();
  keys.forEach((key, n) => multi.set(key, String(n)).incr(key));
  const replies = await multi.exec();
  const values = await client.mGet(keys);
  await client.del(keys);
  await client.quit();
  return { replies, values };
}

async function bullmq() {
  const connection = { host, port, maxRetriesPerRequest: null };
  const opts = { connection, prefix: "{bull}" };
  const name = `q-${run}`;
  const queue = new Queue(name, opts);
  const events = new QueueEvents(name, opts);
  await events.waitUntilReady();
  const worker = new Worker(name, async (job) => job.data.a + job.data.b, opts);
  try {
    const job = await queue.add("add", { a: 2, b: 3 });
    const result = await job.waitUntilFinished(events, 10000);
    const later = await queue.add("add", { a: 1, b: 1 }, { delay: 200 });
    const delayed = await later.waitUntilFinished(events, 10000);
    return { result, delayed };
  } finally {
    await worker.close();
    await events.close();
    await queue.obliterate({ force: true });
    await queue.close();
  }
}

(async () => {
  const seen = {
    ioredis: await ioredisMulti(),
    nodeRedis: await nodeRedisMulti(),
    bullmq: await bullmq(),
  };
  console.log(JSON.stringify(seen));
  process.exit(0);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
