DROP TABLE customers; DROP TYPE customer_status;
