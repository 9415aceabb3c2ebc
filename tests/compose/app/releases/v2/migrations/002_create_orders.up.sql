CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id), total numeric(10,2) NOT NULL CHECK (total >= 0));
CREATE INDEX orders_customer_idx ON orders(customer_id);
