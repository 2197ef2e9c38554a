-- The embedded demo's schema: a small shop. `orders` has REPLICA IDENTITY FULL (before images),
-- `orders.notes` is sometimes large enough to be TOASTed, `customers.profile` is jsonb, and
-- `scratch` is truncated now and then.

CREATE TABLE customers (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL,
    tier       text NOT NULL DEFAULT 'standard',
    profile    jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status      text NOT NULL DEFAULT 'new',
    total       numeric(12, 2) NOT NULL DEFAULT 0,
    notes       text,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE orders REPLICA IDENTITY FULL;

CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line     int NOT NULL,
    sku      text NOT NULL,
    qty      int NOT NULL,
    price    numeric(10, 2) NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE scratch (
    id      bigserial PRIMARY KEY,
    payload text NOT NULL
);

-- Polling needs a column that moves on every update.
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

INSERT INTO customers (name, email, tier, profile)
SELECT 'Customer ' || n, 'customer' || n || '@example.com',
       (ARRAY['standard', 'gold', 'platinum'])[1 + n % 3],
       jsonb_build_object('newsletter', n % 2 = 0, 'visits', n)
FROM generate_series(1, 20) AS n;

INSERT INTO orders (customer_id, status, total, notes)
SELECT 1 + n % 20, 'paid', n * 10.5, 'seed order'
FROM generate_series(1, 30) AS n;

INSERT INTO order_items (order_id, line, sku, qty, price)
SELECT o.id, l, 'SKU-' || (100 + o.id * 7 + l), 1 + l, 9.99
FROM orders AS o, generate_series(1, 2) AS l;
