CREATE TYPE customer_status AS ENUM ('active', 'paused', 'gone');
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, status customer_status NOT NULL DEFAULT 'active');
