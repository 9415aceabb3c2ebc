// A migration that takes longer than `migrations.timeout: 5s` allows (30 s in pg_sleep), then
// creates a table: if it ever commits, the timed-out deploy's migration ran on after all.
module.exports = class SlowLateChange1700000000001 {
  name = "SlowLateChange1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`SELECT pg_sleep(30)`);
    await queryRunner.query(`CREATE TABLE "late_change" ("id" integer)`);
  }

  async down(queryRunner) {
    await queryRunner.query(`DROP TABLE "late_change"`);
  }
};
