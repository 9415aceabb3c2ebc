ALTER TABLE customers ADD COLUMN nickname text;
CREATE INDEX customers_nickname_idx ON customers(nickname);
