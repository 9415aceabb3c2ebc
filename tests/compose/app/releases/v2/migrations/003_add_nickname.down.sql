DROP INDEX customers_nickname_idx;
ALTER TABLE customers DROP COLUMN nickname;
