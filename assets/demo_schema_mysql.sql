-- The embedded demo's shop on MariaDB ([demo] mysql = true): the tables of demo_schema.sql in
-- MySQL's dialect. No foreign keys: rows a cascade deletes are not in the binlog, so the
-- workload deletes an order's items itself. `updated_at` moves on every update (polling).

CREATE TABLE customers (
    id         BIGINT AUTO_INCREMENT PRIMARY KEY,
    name       VARCHAR(200) NOT NULL,
    email      VARCHAR(200) NOT NULL,
    tier       VARCHAR(20) NOT NULL DEFAULT 'standard',
    profile    JSON NOT NULL,
    updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
);

CREATE TABLE orders (
    id          BIGINT AUTO_INCREMENT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    status      VARCHAR(20) NOT NULL DEFAULT 'new',
    total       DECIMAL(12, 2) NOT NULL DEFAULT 0,
    notes       TEXT,
    placed_at   TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
);

CREATE TABLE order_items (
    order_id BIGINT NOT NULL,
    line     INT NOT NULL,
    sku      VARCHAR(40) NOT NULL,
    qty      INT NOT NULL,
    price    DECIMAL(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE scratch (
    id      BIGINT AUTO_INCREMENT PRIMARY KEY,
    payload TEXT NOT NULL
);

INSERT INTO customers (name, email, tier, profile)
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
SELECT CONCAT('Customer ', i), CONCAT('customer', i, '@example.com'),
       ELT(1 + i % 3, 'standard', 'gold', 'platinum'),
       JSON_OBJECT('newsletter', i % 2 = 0, 'visits', i)
FROM n;

INSERT INTO orders (customer_id, status, total, notes)
WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30)
SELECT 1 + i % 20, 'paid', i * 10.5, 'seed order' FROM n;

INSERT INTO order_items (order_id, line, sku, qty, price)
SELECT o.id, l.line, CONCAT('SKU-', 100 + o.id * 7 + l.line), 1 + l.line, 9.99
FROM orders AS o, (SELECT 1 AS line UNION ALL SELECT 2) AS l;
