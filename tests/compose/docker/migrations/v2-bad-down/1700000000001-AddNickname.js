// The fixture's AddNickname with a down() that errors (a typo in the column name).
module.exports = class AddNickname1700000000001 {
  name = "AddNickname1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`ALTER TABLE "users" ADD COLUMN "nickname" text`);
    await queryRunner.query(`CREATE INDEX "users_nickname_idx" ON "users" ("nickname")`);
  }

  async down(queryRunner) {
    await queryRunner.query(`DROP INDEX "users_nickname_idx"`);
    await queryRunner.query(`ALTER TABLE "users" DROP COLUMN "nick_name"`);
  }
};
