//! Ordinary developer traffic: source code, lockfiles, configs, docs, logs, API payloads,
//! base64 images, UUID-heavy JSON. Generated with random ids, hashes and names so that
//! the hashes and ids vary the way they do in real traffic. None may be blocked.

use super::generate::{Rng, expand};

/// Templates of benign payloads (expanded with `generate::expand`); each is used many times.
const PAYLOADS: &[&str] = &[
    // Lockfiles and checksums.
    concat!(
        "{\n  \"name\": \"web-{l:6}\",\n  \"lockfileVersion\": 3,\n  \"packages\": {\n",
        "    \"node_modules/{l:8}\": {\n      \"version\": \"{d:1}.{d:2}.{d:1}\",\n",
        "      \"resolved\": \"https://registry.npmjs.org/{l:8}/-/{l:8}-1.2.3.tgz\",\n",
        "      \"integrity\": \"sha512-{b:86}==\",\n      \"dev\": true\n    },\n",
        "    \"node_modules/{l:5}-{l:4}\": {\n      \"version\": \"4.{d:1}.0\",\n",
        "      \"integrity\": \"sha512-{b:86}==\",\n      \"license\": \"MIT\"\n    }\n  }\n}\n"
    ),
    concat!(
        "[[package]]\nname = \"{l:7}\"\nversion = \"0.{d:1}.{d:2}\"\n",
        "source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        "checksum = \"{h:64}\"\ndependencies = [\n \"{l:5}\",\n \"{l:6}-sys\",\n]\n\n",
        "[[package]]\nname = \"{l:5}\"\nversion = \"1.{d:1}.{d:1}\"\n",
        "source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        "checksum = \"{h:64}\"\n"
    ),
    "github.com/{l:6}/{l:8} v1.{d:1}.{d:1} h1:{b:43}=\ngithub.com/{l:6}/{l:8} v1.{d:1}.{d:1}/go.mod h1:{b:43}=\ngolang.org/x/{l:4} v0.{d:2}.0 h1:{b:43}=\n",
    "{l:8}@^{d:1}.{d:1}.0:\n  version \"{d:1}.{d:1}.{d:1}\"\n  resolved \"https://registry.yarnpkg.com/{l:8}/-/{l:8}-{d:1}.0.0.tgz#{h:40}\"\n  integrity sha512-{b:86}==\n  dependencies:\n    {l:6} \"^{d:1}.0.0\"\n",
    "{l:8}=={d:1}.{d:2}.{d:1} \\\n    --hash=sha256:{h:64} \\\n    --hash=sha256:{h:64}\n{l:6}=={d:1}.{d:1}.0 \\\n    --hash=sha256:{h:64}\n",
    "{h:64}  {l:6}-{d:1}.{d:1}.{d:1}-x86_64-unknown-linux-gnu.tar.gz\n{h:64}  {l:6}-{d:1}.{d:1}.{d:1}-aarch64-apple-darwin.tar.gz\n",
    // Source code.
    concat!(
        "use std::collections::HashMap;\n\npub struct Cache {\n    entries: HashMap<String, Entry>,\n}\n\n",
        "impl Cache {\n    pub fn get(&self, key: &str) -> Option<&Entry> {\n        let key = key.trim();\n",
        "        self.entries.get(key)\n    }\n\n    pub fn token_count(&self) -> usize {\n",
        "        self.entries.values().map(|e| e.tokens.len()).sum()\n    }\n}\n// id {h:12}\n"
    ),
    concat!(
        "import os\nimport requests\n\nAPI_KEY = os.environ[\"{A:6}_API_KEY\"]\n",
        "session = requests.Session()\nsession.headers[\"Authorization\"] = f\"Bearer {API_KEY}\"\n\n",
        "def fetch(item_id: str) -> dict:\n    resp = session.get(f\"https://api.example.test/v2/items/{item_id}\", timeout=10)\n",
        "    resp.raise_for_status()\n    return resp.json()\n# request {uuid}\n"
    ),
    concat!(
        "export async function login(user, password) {\n  const res = await fetch('/api/session', {\n",
        "    method: 'POST',\n    headers: { 'Content-Type': 'application/json', 'X-Request-Id': '{uuid}' },\n",
        "    body: JSON.stringify({ user, password }),\n  });\n  const { token } = await res.json();\n",
        "  localStorage.setItem('authToken', token);\n  return token;\n}\n"
    ),
    concat!(
        "func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {\n",
        "\ttoken := r.Header.Get(\"Authorization\")\n\tif token == \"\" {\n\t\thttp.Error(w, \"missing token\", 401)\n\t\treturn\n\t}\n",
        "\tkey := fmt.Sprintf(\"session:%s\", r.URL.Query().Get(\"id\"))\n\ts.cache.Delete(key)\n}\n// build {h:40}\n"
    ),
    concat!(
        "CREATE TABLE api_keys (\n  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),\n  key_hash TEXT NOT NULL,\n",
        "  secret_prefix VARCHAR(8),\n  created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n",
        "INSERT INTO api_keys (id, key_hash, secret_prefix) VALUES ('{uuid}', '{h:64}', 'ck_{a:4}');\n"
    ),
    // Configuration.
    concat!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api-{l:5}\n  labels:\n    app: api\n",
        "spec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: api\n",
        "        image: registry.example.test/api@sha256:{h:64}\n        env:\n        - name: DB_PASSWORD\n",
        "          valueFrom:\n            secretKeyRef:\n              name: db-credentials\n              key: password\n"
    ),
    concat!(
        "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n",
        "      POSTGRES_USER: app\n  api:\n    build: .\n    environment:\n",
        "      DATABASE_URL: postgres://app:${POSTGRES_PASSWORD}@db:5432/app\n      SECRET_KEY: ${SECRET_KEY}\n"
    ),
    concat!(
        "name: ci\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n",
        "      - uses: actions/checkout@{h:40}\n      - uses: actions/setup-node@{h:40}\n",
        "      - run: npm ci\n        env:\n          NPM_TOKEN: ${{ secrets.NPM_TOKEN }}\n",
        "          GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"
    ),
    concat!(
        "variable \"api_key\" {\n  type      = string\n  sensitive = true\n}\n\n",
        "resource \"aws_s3_bucket\" \"logs\" {\n  bucket = \"logs-{l:8}-{d:4}\"\n  tags = {\n    owner = \"team-{l:4}\"\n  }\n}\n"
    ),
    "# .env.example\nDATABASE_URL=postgres://user:password@localhost:5432/dev\nOPENAI_API_KEY=\nSTRIPE_SECRET_KEY=sk_test_...\nSESSION_SECRET=change-me\nLOG_LEVEL=debug\n",
    "[server]\nhost = \"0.0.0.0\"\nport = {d:4}\nworkers = 4\n\n[auth]\nprovider = \"oidc\"\nissuer = \"https://id.example.test\"\nclient_id = \"{uuid}\"\ntoken_ttl = 3600\n",
    // Docs.
    concat!(
        "## Authentication\n\nCreate an API key in the dashboard and export it:\n\n```sh\nexport ACME_API_KEY=<your key>\n```\n\n",
        "Requests carry it in the `Authorization` header. Keys can be rotated at any time; the old key\n",
        "stops working after 24 hours. See [tokens](https://docs.example.test/tokens) for scopes.\n"
    ),
    concat!(
        "Release {d:1}.{d:2}.0 ({d:4}-0{d:1}-1{d:1})\n\n* Fix token refresh when the session key expired (#{d:4})\n",
        "* Faster primary key lookups\n* The `auth` module now validates the `secret_ref` field\n",
        "\nFull changelog: https://git.example.test/{l:6}/compare/{h:7}...{h:7}\n"
    ),
    // Logs and VCS output.
    concat!(
        "commit {h:40}\nAuthor: Dev {L:6} <dev@example.test>\nDate:   Mon Nov 3 10:{d:2}:00 2025 +0000\n\n",
        "    Rotate signing key loader; drop legacy token parser\n\ncommit {h:40}\nMerge: {h:7} {h:7}\n"
    ),
    "{d:4}-11-30T03:{d:2}:{d:2}.{d:3}Z INFO request_id={uuid} trace_id={h:32} span_id={h:16} method=GET path=/v1/items status=200 duration_ms={d:2}\n{d:4}-11-30T03:{d:2}:{d:2}.{d:3}Z WARN token refresh retry attempt=2 key_version=7 session={uuid}\n",
    // API payloads.
    concat!(
        "{\"model\": \"gpt-4o-mini\", \"max_tokens\": 1024, \"temperature\": 0.2, \"messages\": [",
        "{\"role\": \"system\", \"content\": \"You are a careful assistant.\"}, ",
        "{\"role\": \"user\", \"content\": \"Summarise the design doc {uuid} in 5 bullets.\"}]}"
    ),
    "{\"data\": [{\"id\": \"{uuid}\", \"owner_id\": \"{uuid}\", \"parent\": \"{uuid}\", \"etag\": \"{h:32}\", \"created\": \"2025-10-{d:2}\"}, {\"id\": \"{uuid}\", \"owner_id\": \"{uuid}\", \"etag\": \"{h:32}\"}], \"next_cursor\": \"{b:32}\"}",
    "{\"event\": \"push\", \"after\": \"{h:40}\", \"before\": \"{h:40}\", \"repository\": {\"id\": {d:9}, \"node_id\": \"R_kgDO{a:6}\", \"full_name\": \"{l:6}/{l:8}\"}, \"installation\": {\"id\": {d:8}}}",
    "<img alt=\"logo\" src=\"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{b:1200}\" />",
    "<link rel=\"stylesheet\" href=\"https://cdn.example.test/app.css\" integrity=\"sha384-{b:64}\" crossorigin=\"anonymous\">\n<script src=\"/static/app.{h:8}.js\" nonce=\"{b:22}\"></script>",
    "{\"attachments\": [{\"filename\": \"report.pdf\", \"content\": \"JVBERi0xLjcK{b:900}\"}]}",
    "id,user_id,session_id,amount\n{d:6},{uuid},{uuid},{d:3}.{d:2}\n{d:6},{uuid},{uuid},{d:2}.{d:2}\n",
    "{\"jsonrpc\": \"2.0\", \"id\": {d:3}, \"method\": \"tools/call\", \"params\": {\"name\": \"read_file\", \"arguments\": {\"path\": \"src/auth/token.rs\"}}}",
    "const KEYS = { up: 'ArrowUp', down: 'ArrowDown' };\nfunction onKey(e) { if (e.key === KEYS.up) move(-1); }\nconst tokenizer = new Tokenizer({ vocab: 'cl100k_base' });\n",
];

/// `n` benign payloads.
pub fn payloads(n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n)
        .map(|i| expand(PAYLOADS[i % PAYLOADS.len()], rng))
        .collect()
}
