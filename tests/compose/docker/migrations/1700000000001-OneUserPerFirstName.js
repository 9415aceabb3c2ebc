// A unique index the real rows break (many users share a first name): PostgreSQL refuses it, which
// the rehearsal finds on a copy of the backup before production is touched (rehearsal-catches).
module.exports = class OneUserPerFirstName1700000000001 {
  name = "OneUserPerFirstName1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`CREATE UNIQUE INDEX "users_first_name_key" ON "users" (split_part("name", ' ', 1))`);
  }

  async down(queryRunner) {
    await queryRunner.query(`DROP INDEX "users_first_name_key"`);
  }
};
