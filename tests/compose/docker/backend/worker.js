// The worker: reads the users table every two seconds, as a queue consumer would.
const { Client } = require("pg");

const release = process.env.RELEASE || "unknown";
console.log(`worker ${release} started`);
setInterval(async () => {
  const client = new Client({ connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT count(*) FROM "users"');
  } catch (e) {
    console.error(`worker: ${e.message}`);
  } finally {
    client.end().catch(() => {});
  }
}, 2000);

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
