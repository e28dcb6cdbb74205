-- pgshift.aurora lab: the demo dataset's rows, a view and a materialized view.
-- Runs right after 10_schema.sql in the same transaction (psql
-- --single-transaction), still as app_owner. Deterministic (setseed), fast
-- (generate_series only, a few seconds in all).
SET ROLE app_owner;
SET TIME ZONE 'UTC';
SELECT setseed(0.42) AS lab_seed \gset

-- 2,000 customers; one in five was referred by an earlier customer.
INSERT INTO public.customers (name, email, country, referred_by, preferences, created_at)
SELECT 'Customer ' || g,
       'customer' || g || '@example.com',
       (ARRAY['DE', 'FR', 'NL', 'BE', 'IT', 'ES', 'PL', 'AT'])[1 + g % 8],
       NULL,
       jsonb_build_object('newsletter', g % 3 = 0, 'language', (ARRAY['de', 'fr', 'en'])[1 + g % 3]),
       timestamptz '2024-06-01 00:00:00+00' + g * interval '97 minutes'
FROM generate_series(1, 2000) AS g;
UPDATE public.customers SET referred_by = id - 7 WHERE id % 5 = 0 AND id > 7;

-- 3,000 addresses (every customer one, every other customer a second one).
INSERT INTO public.addresses (customer_id, line1, city, postal_code, country, geo)
SELECT c.id, (c.id * 7 % 300 + 1) || ' Harbour Street', 'City ' || (c.id % 97), lpad((c.id * 13 % 99999)::text, 5, '0'),
       c.country, jsonb_build_object('lat', 48 + (c.id % 100) / 10.0, 'lon', 2 + (c.id % 150) / 10.0)
FROM public.customers AS c
UNION ALL
SELECT c.id, (c.id % 50 + 1) || ' Warehouse Road', 'City ' || (c.id % 89), lpad((c.id * 17 % 99999)::text, 5, '0'),
       c.country, NULL
FROM public.customers AS c
WHERE c.id % 2 = 0;

-- 10,000 parcels; every 25th is consolidated into the parcel before it
-- (self-reference). The address reference is DEFERRABLE INITIALLY DEFERRED.
INSERT INTO public.parcels (customer_id, address_id, weight, status, label, attributes, created_at)
SELECT 1 + g % 2000,
       1 + g % 2000,
       round((0.1 + random() * 30)::numeric, 3),
       (enum_range(NULL::public.shipment_status))[1 + g % 7],
       CASE WHEN g % 10 = 0 THEN decode(md5('label' || g) || md5('barcode' || g), 'hex') END,
       jsonb_build_object('fragile', g % 11 = 0, 'dims_cm', jsonb_build_array(10 + g % 40, 10 + g % 30, 5 + g % 20)),
       timestamptz '2025-01-01 00:00:00+00' + (g % 181) * interval '1 day'
FROM generate_series(1, 10000) AS g;
UPDATE public.parcels SET parent_parcel_id = id - 1 WHERE id % 25 = 0;

-- 12,000 shipments in the six monthly partitions plus 300 that fall outside
-- them (the DEFAULT partition).
INSERT INTO public.shipments (parcel_id, carrier_code, status, shipped_at, details)
SELECT 1 + g % 10000,
       (ARRAY['DHL', 'UPS', 'DPD', 'GLS', 'FEDEX'])[1 + g % 5],
       (enum_range(NULL::public.shipment_status))[1 + g % 7],
       timestamptz '2025-01-01 00:00:00+00' + (g % 181) * interval '1 day' + (g % 1440) * interval '1 minute',
       jsonb_build_object('service', (ARRAY['standard', 'express', 'economy'])[1 + g % 3], 'insured', g % 4 = 0)
FROM generate_series(1, 12000) AS g;
INSERT INTO public.shipments (parcel_id, carrier_code, status, shipped_at, details)
SELECT 1 + g * 31 % 10000, 'DHL', 'delivered',
       CASE WHEN g % 2 = 0 THEN timestamptz '2024-12-01 00:00:00+00' ELSE timestamptz '2025-07-01 00:00:00+00' END
           + (g % 30) * interval '1 day',
       NULL
FROM generate_series(1, 300) AS g;

-- 24,000 tracking events through the parent: the trigger puts every row in
-- its month's child, none in the parent.
INSERT INTO public.tracking_events (shipment_id, event_at, kind, location, payload)
SELECT 1 + g % 12000,
       timestamptz '2025-01-01 00:00:00+00' + (g % 181) * interval '1 day' + (g % 86400) * interval '1 second',
       (ARRAY['scanned', 'loaded', 'departed', 'arrived', 'delivered'])[1 + g % 5],
       'Hub ' || (g % 40),
       CASE WHEN g % 3 = 0 THEN jsonb_build_object('temperature_c', g % 30, 'device', 'scanner-' || g % 12) END
FROM generate_series(1, 24000) AS g;

-- 600 rates without a key, plus exact duplicates of three of them.
INSERT INTO public.carrier_rates (carrier_code, zone, weight_from, weight_to, price, valid_from)
SELECT (ARRAY['DHL', 'UPS', 'DPD', 'GLS', 'FEDEX'])[1 + g % 5],
       'Z' || (g / 5 % 12),
       (g / 60) * 2.5,
       (g / 60) * 2.5 + 2.5,
       round((4 + (g % 60) * 0.75)::numeric, 2),
       date '2025-01-01' + (g % 3) * 30
FROM generate_series(0, 599) AS g;
INSERT INTO public.carrier_rates
SELECT * FROM public.carrier_rates WHERE zone = 'Z0' AND carrier_code = 'DHL' ORDER BY valid_from LIMIT 3;

-- 8 documents: 5 bodies of about 1.3 MB (random hex: TOAST cannot shrink
-- them much), 3 small ones; most with a bytea scan.
INSERT INTO public.documents (parcel_id, kind, body, scan)
SELECT d * 100,
       CASE WHEN d <= 5 THEN 'customs_archive' ELSE 'delivery_note' END,
       (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, CASE WHEN d <= 5 THEN 40000 + d ELSE 20 END)),
       CASE WHEN d <> 8 THEN (SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 2048 * d)) END
FROM generate_series(1, 8) AS d;

INSERT INTO public."CustomsDeclarations" ("ParcelId", "HsCode", "DeclaredValue", "OriginCountry", "Contents")
SELECT g * 10,
       lpad((g * 7919 % 999999)::text, 6, '0'),
       round((5 + random() * 995)::numeric, 2),
       (ARRAY['CN', 'US', 'TR', 'IN', 'VN'])[1 + g % 5],
       jsonb_build_array(jsonb_build_object('item', 'article ' || g, 'qty', 1 + g % 4))
FROM generate_series(1, 1000) AS g;

INSERT INTO public.session_cache (session_id, customer_id, data, expires_at)
SELECT md5('session' || g)::uuid, 1 + g % 2000, jsonb_build_object('cart', g % 5), now() + interval '1 hour'
FROM generate_series(1, 200) AS g;

INSERT INTO billing.invoices (customer_id, amount, status, lines, issued_at)
SELECT 1 + g % 2000,
       round((10 + random() * 490)::numeric, 2),
       CASE WHEN g % 6 = 0 THEN 'paid' ELSE 'open' END,
       jsonb_build_array(jsonb_build_object('parcel', 1 + g % 10000, 'amount', 10 + g % 90)),
       timestamptz '2025-01-01 00:00:00+00' + (g % 181) * interval '1 day'
FROM generate_series(1, 3000) AS g;

INSERT INTO billing."VatRates" ("CountryCode", "ValidFrom", "RatePercent") VALUES
    ('DE', '2020-01-01', 19.00), ('FR', '2020-01-01', 20.00), ('NL', '2020-01-01', 21.00),
    ('BE', '2020-01-01', 21.00), ('IT', '2020-01-01', 22.00), ('ES', '2020-01-01', 21.00),
    ('PL', '2020-01-01', 23.00), ('AT', '2020-01-01', 20.00);

-- A plain view and a materialized view (logical replication copies neither:
-- the matview must be refreshed on the target).
CREATE VIEW public.open_invoices AS
SELECT i.invoice_no, c.name AS customer, i.amount, i.issued_at
FROM billing.invoices AS i
JOIN public.customers AS c ON c.id = i.customer_id
WHERE i.status = 'open';

CREATE MATERIALIZED VIEW public.shipment_daily_stats AS
SELECT date_trunc('day', shipped_at) AS day, carrier_code, status, count(*) AS shipments
FROM public.shipments
GROUP BY 1, 2, 3
WITH DATA;
CREATE UNIQUE INDEX shipment_daily_stats_key ON public.shipment_daily_stats (day, carrier_code, status);

RESET ROLE;
ANALYZE;

INSERT INTO public.lab_meta (key, value) VALUES
    ('dataset', 'shipping'),
    ('dataset_version', '1'),
    ('loaded_at', now()::text);
