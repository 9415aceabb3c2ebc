// Destroys data: drops the users' names; its down() re-adds the column empty, so only the
// backup brings the names back (the destructive-down scenario).
module.exports = class DropName1700000000001 {
  name = "DropName1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" DROP COLUMN "name"`);
  }

  async down(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" ADD COLUMN "name" text`);
  }
};
