-- The demo schema: a page builder's tables, as in the seed design.
CREATE TABLE users (
    id         text PRIMARY KEY,
    username   text UNIQUE NOT NULL,
    email      text UNIQUE NOT NULL,
    role       text NOT NULL CHECK (role IN ('user', 'admin', 'god', 'supergod')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE page_views (
    id         serial PRIMARY KEY,
    slug       text UNIQUE NOT NULL,
    title      text NOT NULL,
    level      int NOT NULL DEFAULT 1,
    owner_id   text REFERENCES users(id),
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE component_hierarchy (
    id             serial PRIMARY KEY,
    page_id        int NOT NULL REFERENCES page_views(id) ON DELETE CASCADE,
    parent_id      int REFERENCES component_hierarchy(id),
    component_type text NOT NULL,
    "order"        int NOT NULL DEFAULT 0,
    props          jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE workflows (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    owner_id   text REFERENCES users(id),
    definition jsonb NOT NULL DEFAULT '{}',
    is_active  boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lua_scripts (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    owner_id   text REFERENCES users(id),
    code       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE packages (
    id           serial PRIMARY KEY,
    name         text UNIQUE NOT NULL,
    version      text NOT NULL,
    installed_by text REFERENCES users(id),
    installed_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO users (id, username, email, role) VALUES
    ('u_alice', 'alice', 'alice@example.com', 'user'),
    ('u_bob',   'bob',   'bob@example.com',   'admin'),
    ('u_carol', 'carol', 'carol@example.com', 'god'),
    ('u_dave',  'dave',  'dave@example.com',  'supergod'),
    ('u_erin',  'erin',  'erin@example.com',  'user'),
    ('u_frank', 'frank', 'frank@example.com', 'user');

INSERT INTO page_views (slug, title, level, owner_id, is_active) VALUES
    ('home',     'Home',          1, 'u_carol', true),
    ('about',    'About us',      1, 'u_carol', true),
    ('pricing',  'Pricing',       2, 'u_bob',   true),
    ('admin',    'Admin console', 3, 'u_dave',  true),
    ('drafts',   'Drafts',        2, 'u_alice', false);

INSERT INTO component_hierarchy (page_id, parent_id, component_type, "order", props) VALUES
    (1, NULL, 'Container', 0, '{"padding": 16}'),
    (1, 1,    'Heading',   0, '{"text": "Welcome", "level": 1}'),
    (1, 1,    'Button',    1, '{"label": "Sign up", "href": "/signup"}'),
    (2, NULL, 'Container', 0, '{}'),
    (2, 4,    'Text',      0, '{"text": "We build pages."}'),
    (3, NULL, 'Table',     0, '{"columns": ["plan", "price"]}');

INSERT INTO workflows (name, owner_id, definition, is_active) VALUES
    ('publish-page',  'u_carol', '{"steps": ["review", "publish"]}', true),
    ('nightly-clean', 'u_dave',  '{"cron": "0 3 * * *"}',            true),
    ('welcome-mail',  'u_carol', '{"steps": ["render", "send"]}',    false),
    ('archive-old',   'u_dave',  '{"older_than_days": 90}',          true);

INSERT INTO lua_scripts (name, owner_id, code) VALUES
    ('greet',    'u_carol', 'return "hello " .. ctx.user.name'),
    ('counter',  'u_carol', 'ctx.state.n = (ctx.state.n or 0) + 1'),
    ('redirect', 'u_dave',  'if ctx.path == "/old" then return ctx.redirect("/new") end'),
    ('noop',     'u_dave',  'return nil');

INSERT INTO packages (name, version, installed_by) VALUES
    ('forms',     '1.4.2', 'u_dave'),
    ('analytics', '0.9.0', 'u_dave'),
    ('blog',      '2.1.0', 'u_carol'),
    ('seo-tools', '1.0.5', 'u_carol');
