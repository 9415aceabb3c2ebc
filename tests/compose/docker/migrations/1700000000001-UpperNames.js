// Rewrites data: every name in upper case; its down() cannot undo that and does nothing (the
// data-rewrite scenario).
module.exports = class UpperNames1700000000001 {
  name = "UpperNames1700000000001";

  async up(queryRunner) {
    await queryRunner.query(`UPDATE "users" SET "name" = upper("name")`);
  }

  async down() {}
};
