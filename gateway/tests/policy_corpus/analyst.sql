-- Everyday analyst queries over the tables `ana` is granted: each must be
-- answered, and answered exactly as on a database holding only her rows.
-- name: select-star
-- expect: answer
SELECT * FROM employees
----
-- name: projection-where-order
-- expect: answer
-- ordered: yes
SELECT id, name, salary FROM employees WHERE salary > 100000 ORDER BY salary DESC
----
-- name: group-by-all
-- expect: answer
SELECT dept, count(*) AS n, avg(salary) AS avg_salary FROM employees GROUP BY ALL
----
-- name: order-by-all-limit
-- expect: answer
-- ordered: yes
SELECT name, hired FROM employees ORDER BY ALL LIMIT 3
----
-- name: join-departments
-- expect: answer
SELECT e.name, d.title FROM employees e JOIN departments d ON d.code = e.dept
----
-- name: left-join-logs
-- expect: answer
SELECT e.name, sum(w.hours) AS hours FROM employees e LEFT JOIN work_logs w ON w.employee_id = e.id GROUP BY e.name
----
-- name: departments-all
-- expect: answer
SELECT code, title, budget FROM departments ORDER BY budget DESC
----
-- name: cte-plain
-- expect: answer
WITH seniors AS (SELECT * FROM employees WHERE hired < DATE '2021-01-01') SELECT name FROM seniors
----
-- name: cte-chain
-- expect: answer
WITH a AS (SELECT id, salary FROM employees), b AS (SELECT id, salary * 2 AS s2 FROM a) SELECT sum(s2) FROM b
----
-- name: cte-materialized
-- expect: answer
WITH t AS MATERIALIZED (SELECT dept, salary FROM employees) SELECT dept, max(salary) FROM t GROUP BY dept
----
-- name: recursive-management-chain
-- expect: answer
WITH RECURSIVE chain(id, name, depth) AS (
  SELECT id, name, 0 FROM employees WHERE manager_id IS NULL
  UNION ALL
  SELECT e.id, e.name, c.depth + 1 FROM employees e JOIN chain c ON e.manager_id = c.id
) SELECT name, depth FROM chain
----
-- name: recursive-counter
-- expect: answer
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT sum(i) FROM n
----
-- name: recursive-over-logs
-- expect: answer
WITH RECURSIVE weeks(w) AS (SELECT min(week) FROM work_logs UNION ALL SELECT w + 1 FROM weeks WHERE w < (SELECT max(week) FROM work_logs)) SELECT w FROM weeks
----
-- name: window-rank
-- expect: answer
SELECT name, dept, rank() OVER (PARTITION BY dept ORDER BY salary DESC) AS r FROM employees
----
-- name: window-running-sum
-- expect: answer
SELECT name, sum(salary) OVER (ORDER BY hired ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM employees
----
-- name: window-lag-lead
-- expect: answer
SELECT name, lag(name) OVER (ORDER BY id) AS prev, lead(salary, 1, 0) OVER (ORDER BY id) AS next_salary FROM employees
----
-- name: qualify
-- expect: answer
SELECT dept, name, salary FROM employees QUALIFY row_number() OVER (PARTITION BY dept ORDER BY salary DESC) = 1
----
-- name: named-window
-- expect: answer
SELECT name, avg(salary) OVER w AS a FROM employees WINDOW w AS (PARTITION BY dept)
----
-- name: columns-regex
-- expect: answer
SELECT COLUMNS('^(id|name)$') FROM employees
----
-- name: columns-star-aggregate
-- expect: answer
SELECT max(COLUMNS(* EXCLUDE (tags, profile))) FROM employees
----
-- name: star-exclude
-- expect: answer
SELECT * EXCLUDE (email, ssn, tags, profile) FROM employees
----
-- name: star-replace
-- expect: answer
SELECT * REPLACE (upper(title) AS title) FROM departments
----
-- name: list-functions
-- expect: answer
SELECT name, len(tags) AS n, list_contains(tags, 'rust') AS rusty FROM employees
----
-- name: list-literals
-- expect: answer
SELECT [1, 2, 3] AS l, [1, 2, 3][2] AS second, list_sum([1, 2, 3]) AS s
----
-- name: list-aggregate
-- expect: answer
SELECT dept, list(name ORDER BY name) AS names FROM employees GROUP BY dept
----
-- name: struct-fields
-- expect: answer
SELECT name, profile.city AS city, profile['level'] AS lvl FROM employees
----
-- name: struct-literal
-- expect: answer
SELECT {'a': 1, 'b': 'x'} AS s, struct_pack(k := 2) AS t
----
-- name: unnest-in-select
-- expect: answer
SELECT name, unnest(tags) AS tag FROM employees
----
-- name: unnest-literal
-- expect: answer
SELECT unnest([10, 20, 30]) AS x
----
-- name: generate-series-select
-- expect: answer
SELECT generate_series(1, 4) AS g
----
-- name: range-from
-- expect: answer
SELECT i FROM range(5) t(i)
----
-- name: generate-series-from-join
-- expect: answer
SELECT g.x, count(e.id) AS n FROM generate_series(1, 3) g(x) LEFT JOIN employees e ON e.profile.level = g.x GROUP BY g.x
----
-- name: string-functions
-- expect: answer
SELECT upper(name), lower(name), length(name), substr(name, 1, 3), concat(name, '!'), replace(name, 'a', 'A'), reverse(name) FROM employees
----
-- name: string-like
-- expect: answer
SELECT name FROM employees WHERE name LIKE '%a%' OR name ILIKE 'B%'
----
-- name: regexp
-- expect: answer
SELECT name, regexp_matches(name, '^[A-C]') AS early, regexp_replace(name, '[aeiou]', '_', 'g') AS masked FROM employees
----
-- name: string-agg
-- expect: answer
SELECT string_agg(name, ', ' ORDER BY name) AS names FROM employees
----
-- name: date-functions
-- expect: answer
SELECT name, year(hired) AS y, month(hired) AS m, date_trunc('month', hired) AS mon, hired + INTERVAL 30 DAY AS later, date_diff('day', hired, DATE '2025-01-01') AS days FROM employees
----
-- name: strftime
-- expect: answer
SELECT strftime(hired, '%Y-%m') AS ym, count(*) FROM employees GROUP BY 1
----
-- name: extract
-- expect: answer
SELECT EXTRACT(year FROM hired) AS y FROM employees
----
-- name: case-when
-- expect: answer
SELECT name, CASE WHEN salary >= 120000 THEN 'high' WHEN salary >= 100000 THEN 'mid' ELSE 'low' END AS band FROM employees
----
-- name: coalesce-nullif
-- expect: answer
SELECT name, coalesce(manager_id, 0) AS m, nullif(dept, 'x') AS d FROM employees
----
-- name: casts
-- expect: answer
SELECT CAST(salary AS DOUBLE) / 12 AS monthly, salary::VARCHAR AS s, TRY_CAST(name AS INTEGER) AS bad FROM employees
----
-- name: in-subquery
-- expect: answer
SELECT name FROM employees WHERE id IN (SELECT employee_id FROM work_logs WHERE hours > 39)
----
-- name: exists-correlated
-- expect: answer
SELECT name FROM employees e WHERE EXISTS (SELECT 1 FROM work_logs w WHERE w.employee_id = e.id)
----
-- name: not-exists
-- expect: answer
SELECT name FROM employees e WHERE NOT EXISTS (SELECT 1 FROM work_logs w WHERE w.employee_id = e.id)
----
-- name: scalar-subquery
-- expect: answer
SELECT name, salary - (SELECT avg(salary) FROM employees) AS diff FROM employees
----
-- name: lateral
-- expect: answer
SELECT e.name, l.hours FROM employees e, LATERAL (SELECT sum(hours) AS hours FROM work_logs w WHERE w.employee_id = e.id) l
----
-- name: union-all
-- expect: answer
SELECT name AS label FROM employees UNION ALL SELECT title FROM departments
----
-- name: union-distinct-except-intersect
-- expect: answer
SELECT dept FROM employees UNION SELECT code FROM departments EXCEPT SELECT 'hr' INTERSECT SELECT code FROM departments
----
-- name: rollup
-- expect: answer
SELECT dept, profile.city AS city, sum(salary) FROM employees GROUP BY ROLLUP (dept, profile.city)
----
-- name: grouping-sets
-- expect: answer
SELECT dept, hired, count(*) FROM employees GROUP BY GROUPING SETS ((dept), (hired), ())
----
-- name: having
-- expect: answer
SELECT employee_id, sum(hours) AS h FROM work_logs GROUP BY employee_id HAVING sum(hours) > 40
----
-- name: distinct-on
-- expect: answer
SELECT DISTINCT ON (dept) dept, name FROM employees ORDER BY dept, salary DESC
----
-- name: count-distinct
-- expect: answer
SELECT count(DISTINCT dept) AS depts, count(*) AS people FROM employees
----
-- name: aggregates-stats
-- expect: answer
SELECT min(salary), max(salary), median(salary), stddev_pop(salary), quantile_cont(salary, 0.5) FROM employees
----
-- name: filter-clause
-- expect: answer
SELECT count(*) FILTER (WHERE salary > 100000) AS high, count(*) AS all_ FROM employees
----
-- name: arg-max
-- expect: answer
SELECT arg_max(name, salary) AS top FROM employees
----
-- name: values
-- expect: answer
SELECT * FROM (VALUES (1, 'one'), (2, 'two')) v(n, word)
----
-- name: masked-columns-visible-as-masked
-- expect: answer
SELECT name, email, ssn FROM employees
----
-- name: masked-filter
-- expect: answer
SELECT count(*) FROM employees WHERE email LIKE '%***'
----
-- name: self-join
-- expect: answer
SELECT e.name, m.name AS manager FROM employees e LEFT JOIN employees m ON m.id = e.manager_id
----
-- name: math
-- expect: answer
SELECT round(salary / 7.0, 2) AS r, abs(-salary) AS a, salary % 7 AS m, sqrt(salary) AS q, ln(salary) AS l FROM employees
----
-- name: quoted-identifiers
-- expect: answer
SELECT "name", "Salary" FROM "Employees" AS "E"
----
-- name: qualified-names
-- expect: answer
SELECT count(*) FROM main.employees
----
-- name: catalog-qualified
-- expect: answer
SELECT count(*) FROM shared.main.employees
----
-- name: limit-offset
-- expect: answer
-- ordered: yes
SELECT id FROM employees ORDER BY id LIMIT 2 OFFSET 1
----
-- name: between-in-list
-- expect: answer
SELECT name FROM employees WHERE id BETWEEN 2 AND 4 AND dept IN ('eng', 'ops')
----
-- name: is-null
-- expect: answer
SELECT name FROM employees WHERE manager_id IS NULL OR tags IS NULL
----
-- name: json-functions
-- expect: answer
SELECT to_json({'n': name, 'l': tags}) AS j FROM employees
----
-- name: map-literal
-- expect: answer
SELECT MAP {'a': 1, 'b': 2}['b'] AS v
----
-- name: lambda
-- expect: answer
SELECT name, list_transform(tags, lambda t: upper(t)) AS up, list_filter(tags, lambda t: t <> 'go') AS kept FROM employees
----
-- name: from-first
-- expect: either
FROM employees SELECT name WHERE salary > 100000
----
-- name: asof-join
-- expect: either
SELECT w.employee_id, w.week, e.name FROM work_logs w ASOF JOIN employees e ON w.employee_id >= e.id
----
-- name: positional-refs-in-group
-- expect: answer
SELECT dept, count(*) FROM employees GROUP BY 1 ORDER BY 2 DESC
----
-- name: nested-subqueries
-- expect: answer
SELECT * FROM (SELECT * FROM (SELECT id, name FROM employees WHERE id > 1) a WHERE id < 5) b
----
-- name: hash-and-md5
-- expect: answer
SELECT md5(name), hash(id) FROM employees
----
-- name: uuid-and-random-shape
-- expect: answer
SELECT count(*) FROM (SELECT uuid() AS u, random() AS r FROM employees)
----
-- name: now-not-null
-- expect: answer
SELECT now() IS NOT NULL AS ok
----
-- name: typeof
-- expect: answer
SELECT typeof(salary), typeof(tags) FROM employees LIMIT 1
