// A migration whose up() is quick and whose down() takes longer than `migrations.timeout` allows
// (60 s in pg_sleep), then changes the database: if that ever happens, the timed-out revert ran
// on after deploy-guard moved on to the restore.
module.exports = class SlowDown1700000000001 {
  name = "SlowDown1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" ADD "nickname" character varying`);
  }

  async down(queryRunner) {
    await queryRunner.query(`SELECT pg_sleep(60)`);
    await queryRunner.query(`CREATE TABLE "late_revert" ("id" integer)`);
    await queryRunner.query(`ALTER TABLE "users" DROP COLUMN "nickname"`);
  }
};
