// The backend: GET /health answers 200 with the release and the user count when the database
// answers, 503 when it does not (or when the release is BROKEN=1: a bug that fails every
// request). One connection per request, so nothing holds the database open. A release with
// writes/RELEASE.sql (signups, edits) runs it when it starts, before it answers anything.
const fs = require("fs");
const http = require("http");
const { Client } = require("pg");

const release = process.env.RELEASE || "unknown";

async function writeOnStart() {
  const file = `${__dirname}/writes/${release}.sql`;
  if (!fs.existsSync(file)) return;
  const client = new Client();
  await client.connect();
  try {
    await client.query(fs.readFileSync(file, "utf8"));
  } finally {
    await client.end();
  }
  console.log(`backend ${release}: wrote ${file}`);
}

const server = http
  .createServer(async (req, res) => {
    if (req.url !== "/health") {
      res.writeHead(404).end();
      return;
    }
    const client = new Client({ connectionTimeoutMillis: 2000 });
    try {
      if (process.env.BROKEN === "1") throw new Error(`release ${release} is broken`);
      await client.connect();
      const r = await client.query('SELECT count(*)::int AS n FROM "users"');
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", release, users: r.rows[0].n }));
    } catch (e) {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "unhealthy", release, error: e.message }));
    } finally {
      client.end().catch(() => {});
    }
  });
writeOnStart().then(
  () => server.listen(8080, () => console.log(`backend ${release} listening on 8080`)),
  (e) => {
    console.error(`backend ${release}: cannot write on start: ${e.message}`);
    process.exit(1);
  },
);

// Stop at once when compose stops the container (as PID 1, node would ignore SIGTERM).
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
