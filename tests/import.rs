//! `relay-operator import` on real compose files (tests/fixtures/compose/): every output
//! renders through the same pipeline as `render`, every compose key gets a report line, and
//! the mappings that matter are checked one by one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use relay_operator::import::{self, EnvTarget, FileReader, ImportOptions, Imported, Outcome};
use relay_operator::manifest;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose")
}

struct Dir(PathBuf);

impl FileReader for Dir {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(self.0.join(path)).map_err(|e| e.to_string())
    }
}

fn compose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

fn import_with(name: &str, options: &ImportOptions) -> Imported {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    import::import_compose(name, &text, options, &Dir(fixtures())).unwrap()
}

fn env_file(name: &str) -> ImportOptions {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    ImportOptions { variables: import::parse_env_file(&text), ..ImportOptions::default() }
}

fn import(name: &str) -> Imported {
    import_with(name, &ImportOptions::default())
}

/// The objects, and what `render` makes of them (it must accept them unchanged).
fn objects(imported: &Imported) -> Vec<Value> {
    let yaml = imported.to_yaml().unwrap();
    let rendering = match manifest::render_text("import", &yaml, &manifest::RenderOptions::default()) {
        Ok(rendering) => rendering,
        Err(e) => panic!("render refuses the import: {e}\n{yaml}"),
    };
    // Every Secret the services reference is among the templates: the only warnings are
    // about mutable image tags, which the report flags too.
    for warning in &rendering.warnings {
        assert!(warning.contains("mutable tag"), "unexpected render warning: {warning}");
    }
    manifest::parse_documents("import", &yaml).unwrap().into_iter().map(|d| d.value).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}

fn spec<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    &find(objects, "RelayService", name)["spec"]
}

fn line<'a>(imported: &'a Imported, key: &str) -> &'a import::Line {
    imported
        .report
        .find(key)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no report line {key}:\n{}", imported.report))
}

#[test]
fn every_fixture_renders_and_every_service_key_is_reported() {
    let files = compose_files();
    assert!(files.len() >= 13, "the seed stack, eleven common-stack files and our own: {files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let imported = import(&name);
        objects(&imported);
        let compose: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (service, definition) in compose["services"].as_object().unwrap() {
            for key in definition.as_object().unwrap().keys() {
                let prefix = format!("{service}.{key}");
                let reported = imported.report.lines.iter().any(|l| l.key == prefix || l.key.starts_with(&format!("{prefix}.")) || l.key.starts_with(&format!("{prefix}[")))
                    // a service left out by profiles is reported once, by its profiles
                    || imported.report.find(&format!("{service}.profiles")).iter().any(|l| l.detail.starts_with("not imported"));
                assert!(reported, "{name}: {prefix} has no report line:\n{}", imported.report);
            }
        }
        for key in compose.as_object().unwrap().keys().filter(|k| *k != "services") {
            assert!(
                imported.report.lines.iter().any(|l| l.key == *key || l.key.starts_with(&format!("{key}."))),
                "{name}: top-level {key} has no report line"
            );
        }
        let text = imported.report.to_string();
        assert!(text.trim_end().lines().last().unwrap().starts_with("summary: "), "{text}");
    }
}

#[test]
fn output_is_stable() {
    for path in compose_files() {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(import(name).to_yaml(), import(name).to_yaml(), "{name}");
        assert_eq!(import(name).report.to_string(), import(name).report.to_string(), "{name}");
    }
}

#[test]
fn seed_stack() {
    let imported = import_with("seed-keeper-stack.yml", &env_file("seed-keeper.env"));
    let objects = objects(&imported);
    let services: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "RelayService")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["app", "db", "elasticsearch", "kafka", "kafka-connect", "kibana", "scheduler", "zookeeper"]
    );

    // compose `command` overrides CMD: Kubernetes args, not command.
    let scheduler = spec(&objects, "scheduler");
    assert_eq!(scheduler["args"], json!(["python", "-m", "src.scheduler"]));
    assert!(scheduler.get("command").is_none());
    // depends_on (list form) → dependsOn.
    assert_eq!(scheduler["dependsOn"], json!(["db", "elasticsearch", "kafka"]));
    assert_eq!(spec(&objects, "kafka")["dependsOn"], json!(["zookeeper"]));
    assert_eq!(spec(&objects, "kafka-connect")["dependsOn"], json!(["elasticsearch", "kafka"]));

    // build without image: a placeholder image and a report line.
    let app = spec(&objects, "app");
    assert_eq!(app["image"], "registry.invalid/app:REPLACE_ME");
    assert_eq!(line(&imported, "app.build").outcome, Outcome::Reported);
    // The API key (secret-looking name) and the database URL (credentials) leave config.data
    // for a Secret template; no value reaches the output, neither from the file nor the .env.
    assert_eq!(
        app["config"]["data"],
        json!({"ELASTICSEARCH_URL": "http://elasticsearch:9200", "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092"})
    );
    let secret_names: Vec<&Value> =
        app["config"]["secrets"].as_array().unwrap().iter().map(|s| &s["name"]).collect();
    assert_eq!(secret_names, [&json!("DATABASE_URL"), &json!("KEEPA_API_KEY")]);
    assert_eq!(
        app["config"]["secrets"][1]["secretKeyRef"],
        json!({"name": "app-env", "key": "KEEPA_API_KEY"})
    );
    assert_eq!(
        find(&objects, "Secret", "app-env")["stringData"],
        json!({"DATABASE_URL": "REPLACE_ME", "KEEPA_API_KEY": "REPLACE_ME"})
    );
    let yaml = imported.to_yaml().unwrap();
    for leaked in ["example-api-key", "postgres:postgres@", "POSTGRES_PASSWORD: postgres"] {
        assert!(!yaml.contains(leaked), "{leaked} copied into the output");
    }
    assert!(!imported.report.to_string().contains("example-api-key"));
    // Named volume → retained storage; bind mounts reported.
    assert_eq!(
        spec(&objects, "db")["storage"],
        json!([{"name": "postgres-data", "size": "1Gi", "mountPath": "/var/lib/postgresql/data"}])
    );
    assert_eq!(line(&imported, "app.volumes[0]").outcome, Outcome::Reported);
    // Ports: the published port is reported, the container port kept.
    assert_eq!(
        spec(&objects, "kafka")["ports"],
        json!([{"name": "tcp-9092", "containerPort": 9092, "protocol": "TCP"}])
    );
    assert!(line(&imported, "kafka.ports[0]").detail.contains("published port 9092 has no equivalent"));
    // zookeeper has no ports: kafka could not reach it; the report says so.
    assert!(line(&imported, "zookeeper").detail.contains("no Service is created"));
    // Dotted keys cannot be env-format config keys.
    assert_eq!(line(&imported, "elasticsearch.environment.discovery.type").outcome, Outcome::Unsupported);
    assert!(line(&imported, "app.depends_on.db").detail.contains("dependsOn db"));
    assert_eq!(line(&imported, "version").outcome, Outcome::Reported);
}

#[test]
fn healthchecks_in_every_form() {
    let imported = import("orders-web-mysql-health.yaml");
    let objects = objects(&imported);
    // CMD-SHELL with $$ and a /run/secrets path: an exec check through /bin/sh, the path
    // rewritten to where the secret is mounted now.
    assert_eq!(
        find(&objects, "HealthPolicy", "mysql-health")["spec"],
        json!({
            "exec": {"command": ["/bin/sh", "-c", "mysql -uroot -p\"$(cat /etc/relay/secrets/mysql_root)\" -e 'SELECT 1' >/dev/null"]},
            "interval": "15s", "timeout": "4s", "retries": 5, "startPeriod": "45s"
        })
    );
    // wget --spider against localhost: an HTTP check (CMD form, and CMD-SHELL with || exit 1).
    assert_eq!(
        find(&objects, "HealthPolicy", "api-health")["spec"],
        json!({"http": {"path": "/healthz", "port": 5000, "scheme": "HTTP"}, "interval": "20s", "timeout": "5s", "retries": 4, "startPeriod": "25s"})
    );
    assert_eq!(spec(&objects, "api")["healthPolicyRef"], json!({"name": "api-health"}));
    assert_eq!(
        find(&objects, "HealthPolicy", "web-health")["spec"],
        json!({"http": {"path": "/", "port": 80, "scheme": "HTTP"}, "interval": "30s", "timeout": "3s", "retries": 3})
    );
    // Chained service_healthy → dependsOn, with the semantics in the report.
    assert_eq!(spec(&objects, "web")["dependsOn"], json!(["api"]));
    assert_eq!(spec(&objects, "api")["dependsOn"], json!(["mysql"]));
    for (service, dependency) in [("web", "api"), ("api", "mysql")] {
        assert!(
            line(&imported, &format!("{service}.depends_on.{dependency}"))
                .detail
                .contains("its HealthPolicy passes: compose's service_healthy"),
            "{service} → {dependency}"
        );
    }
    assert_eq!(
        spec(&objects, "mysql")["config"]["data"]["MYSQL_ROOT_PASSWORD_FILE"],
        "/etc/relay/secrets/mysql_root"
    );
    assert_eq!(line(&imported, "mysql.logging").outcome, Outcome::Reported);

    // CMD-SHELL `curl -s --fail host:port/path || exit 1`: HTTP.
    let objects = self::objects(&import("search-ingest-dashboards.yaml"));
    assert_eq!(
        find(&objects, "HealthPolicy", "search-health")["spec"]["http"],
        json!({"path": "/_cat/health", "port": 9200, "scheme": "HTTP"})
    );
    // A pipe: exec.
    let objects = self::objects(&import("shop-valkey-mariadb.yaml"));
    assert_eq!(
        find(&objects, "HealthPolicy", "valkey-health")["spec"]["exec"]["command"],
        json!(["/bin/sh", "-c", "valkey-cli -h 127.0.0.1 info server | grep -q redis_version"])
    );

    // Our own fixture: curl -fsS with timings from a merged anchor, NONE, disable, a plain string.
    let imported = import_with("every-form.yaml", &env_file("every-form.env"));
    let objects = self::objects(&imported);
    assert_eq!(
        find(&objects, "HealthPolicy", "api-health")["spec"],
        json!({"http": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "interval": "15s", "timeout": "3s", "retries": 4, "startPeriod": "20s", "startInterval": "2s"})
    );
    let start_interval = line(&imported, "api.healthcheck.start_interval");
    assert_eq!(start_interval.outcome, Outcome::Mapped);
    assert!(
        start_interval.detail.contains("takes effect with restartUnhealthy: true"),
        "{}",
        start_interval.detail
    );
    assert_eq!(find(&objects, "HealthPolicy", "web-health")["spec"]["http"]["path"], "/ready");
    assert_eq!(
        find(&objects, "HealthPolicy", "db-health")["spec"]["exec"]["command"],
        json!(["/bin/sh", "-c", "pg_isready -U postgres"])
    );
    for service in ["cache", "worker"] {
        assert!(!objects.iter().any(|o| o["metadata"]["name"] == format!("{service}-health")), "{service}");
        assert!(spec(&objects, service).get("healthPolicyRef").is_none());
    }
}

#[test]
fn every_form_fixture() {
    let imported = import_with("every-form.yaml", &env_file("every-form.env"));
    let objects = objects(&imported);
    let api = spec(&objects, "api");
    // entrypoint → command, command → args.
    assert_eq!(api["command"], json!(["/docker-entrypoint.sh"]));
    assert_eq!(api["args"], json!(["serve", "--port", "8080"]));
    // extends base: merged environment (the service's own value wins), ports appended.
    assert_eq!(api["config"]["data"]["LOG_LEVEL"], "debug");
    assert_eq!(api["config"]["data"]["REGION"], "eu");
    assert_eq!(api["config"]["data"]["COST"], "$5");
    assert_eq!(api["config"]["data"]["FEATURE_FLAGS"], "a,b");
    let ports: Vec<(i64, &str)> = api["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["containerPort"].as_i64().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [(9100, "tcp-9100"), (8080, "web"), (9090, "tcp-9090")]);
    assert_eq!(line(&imported, "api.ports[3]").outcome, Outcome::Reported, "a range is reported");
    // Secrets: from environment (token, URL with credentials), env_file, and a compose secret.
    let secrets: Vec<&str> =
        api["config"]["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(secrets, ["API_TOKEN", "SENTRY_DSN", "SMTP_PASSWORD", "api_key"]);
    for key in ["API_TOKEN", "SENTRY_DSN", "SMTP_PASSWORD"] {
        assert!(api["config"]["data"].get(key).is_none(), "{key} left in config.data");
    }
    assert_eq!(find(&objects, "Secret", "api-key")["stringData"], json!({"api_key": "REPLACE_ME"}));
    let yaml = imported.to_yaml().unwrap();
    for leaked in ["not-copied", "from-env-file", "private@"] {
        assert!(!yaml.contains(leaked), "{leaked} copied into the output");
    }
    // depends_on: conditions, required: false on a service outside the active profiles.
    assert_eq!(api["dependsOn"], json!(["cache", "db"]));
    assert_eq!(line(&imported, "api.depends_on.migrate").outcome, Outcome::Unsupported);
    assert_eq!(line(&imported, "api.depends_on.debug-shell").outcome, Outcome::Reported);
    assert!(line(&imported, "api.depends_on.db").detail.contains("restart: true not mapped"));
    // deploy and security.
    assert_eq!(api["replicas"], 2);
    assert_eq!(
        api["resources"],
        json!({"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "256Mi"}})
    );
    assert_eq!(
        api["securityContext"],
        json!({"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": true})
    );
    assert_eq!(spec(&objects, "worker")["replicas"], 3);
    assert_eq!(line(&imported, "db.user").outcome, Outcome::Reported, "a user name needs a UID");
    // Profiles: debug-shell only with --profile debug.
    assert!(!objects.iter().any(|o| o["metadata"]["name"] == "debug-shell"));
    let with_profile = import_with(
        "every-form.yaml",
        &ImportOptions { profiles: vec!["debug".into()], ..env_file("every-form.env") },
    );
    let objects_debug = self::objects(&with_profile);
    assert_eq!(spec(&objects_debug, "debug-shell")["args"], json!(["sleep", "infinity"]));
    assert_eq!(spec(&objects_debug, "api")["dependsOn"], json!(["cache", "db", "debug-shell"]));
    // extends.file: the other file's definition merged, interpolated with the same variables.
    let admin = spec(&objects, "admin");
    assert_eq!(admin["image"], "example/admin:2.0.0");
    assert_eq!(admin["config"]["data"], json!({"SITE": "admin", "THEME": ""}));
    assert_eq!(admin["ports"][0]["containerPort"], 8081);
    assert!(line(&imported, "admin.extends").detail.contains("from every-form-common.yaml"));
    assert!(
        line(&imported, "interpolation web.environment.THEME (in every-form-common.yaml)")
            .detail
            .contains("${THEME} is not set")
    );
    // Unknown, x- and unsupported keys.
    assert_eq!(line(&imported, "api.frobnicate").outcome, Outcome::Unsupported);
    assert_eq!(line(&imported, "api.x-team").outcome, Outcome::Reported);
    assert_eq!(line(&imported, "x-defaults").outcome, Outcome::Reported);
    assert_eq!(line(&imported, "api.working_dir").outcome, Outcome::Unsupported);
    assert_eq!(line(&imported, "api.tmpfs").outcome, Outcome::Reported);
    assert_eq!(line(&imported, "secrets.unused").outcome, Outcome::Reported);
}

#[test]
fn interpolation_takes_values_from_the_env_file_only() {
    // Without --env-file every ${VAR} is unset and reported, whatever the process has.
    let imported = import("postgres-pgadmin-env.yaml");
    let objects = objects(&imported);
    assert_eq!(spec(&objects, "database")["config"]["data"], json!({"POSTGRES_DB": "", "POSTGRES_USER": ""}));
    // Five ${VAR} without a default are reported; ${CONSOLE_PORT:-8081} takes its default.
    let unset = imported.report.lines.iter().filter(|l| l.key.starts_with("interpolation ")).count();
    assert_eq!(unset, 5);
    assert_eq!(spec(&objects, "console")["config"]["data"]["PGADMIN_LISTEN_PORT"], "8081");
    assert!(line(&imported, "database.image").detail.contains("mutable tag"));
    assert!(line(&imported, "database.container_name").detail.contains("NAME-0"));

    let imported = import_with("every-form.yaml", &env_file("every-form.env"));
    let objects = self::objects(&imported);
    assert_eq!(spec(&objects, "base")["image"], "example/base:1.2.4", "BASE_TAG from the env file");
    let without = import("every-form.yaml");
    assert_eq!(spec(&self::objects(&without), "base")["image"], "example/base:1.2.3", "the default");
    assert!(line(&without, "interpolation api.environment[1]").detail.contains("required (set API_TOKEN)"));
}

#[test]
fn common_stack_shapes() {
    // Merge keys: the anchor's keys in three services, explicit keys win, the URL moved out.
    let imported = import("shop-valkey-mariadb.yaml");
    let objects = objects(&imported);
    let worker = spec(&objects, "shop-worker");
    assert_eq!(worker["config"]["data"]["ALLOWED_NETWORKS"], "127.0.0.0/8 10.40.0.0/16");
    assert_eq!(worker["config"]["data"]["SESSION_STORE"], "valkey:6379");
    let secrets: Vec<&str> =
        worker["config"]["secrets"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(secrets, ["ADMIN_TOKEN", "DATABASE_URL"]);
    for service in ["storefront", "shop-admin"] {
        let config = &spec(&objects, service)["config"];
        assert_eq!(config["data"]["SESSION_STORE"], "valkey", "{service}");
        assert_eq!(config["data"]["ALLOWED_NETWORKS"], "127.0.0.0/8 10.40.0.0/16", "{service}");
        assert_eq!(config["secrets"][0]["name"], "DATABASE_URL", "{service}");
    }
    assert!(!imported.to_yaml().unwrap().contains("change-me-shop"));
    assert_eq!(
        spec(&objects, "valkey")["args"],
        json!(["valkey-server", "--appendonly", "yes", "--maxmemory", "256mb"])
    );
    assert_eq!(line(&imported, "valkey.sysctls").outcome, Outcome::Unsupported);
    assert_eq!(
        spec(&objects, "storefront")["ports"],
        json!([{"name": "tcp-8080", "containerPort": 8080, "protocol": "TCP"}, {"name": "tcp-8443", "containerPort": 8443, "protocol": "TCP"}, {"name": "udp-8443", "containerPort": 8443, "protocol": "UDP"}])
    );

    // Compose secrets: a Secret template per secret (a DNS name, the secret's name as key),
    // *_FILE paths rewritten; build → placeholder.
    let imported = import("gateway-go-postgres-secrets.yaml");
    let objects = self::objects(&imported);
    assert_eq!(find(&objects, "Secret", "pg-pass")["stringData"], json!({"pg_pass": "REPLACE_ME"}));
    for service in ["pg", "inventory"] {
        assert_eq!(
            spec(&objects, service)["config"]["secrets"],
            json!([{"name": "pg_pass", "secretKeyRef": {"name": "pg-pass", "key": "pg_pass"}}]),
            "{service}"
        );
    }
    let pg = spec(&objects, "pg");
    assert_eq!(pg["config"]["data"]["POSTGRES_PASSWORD_FILE"], "/etc/relay/secrets/pg_pass");
    assert_eq!(
        spec(&objects, "inventory")["config"]["data"]["PGPASSWORD_FILE"],
        "/etc/relay/secrets/pg_pass"
    );
    assert_eq!(pg["ports"][0]["containerPort"], 5432, "expose");
    assert_eq!(
        find(&objects, "HealthPolicy", "pg-health")["spec"]["exec"]["command"],
        json!(["pg_isready", "-U", "postgres", "-d", "inventory"])
    );
    assert_eq!(spec(&objects, "inventory")["image"], "registry.invalid/inventory:REPLACE_ME");
    assert_eq!(spec(&objects, "inventory")["dependsOn"], json!(["pg"]));
    assert_eq!(spec(&objects, "gateway")["dependsOn"], json!(["inventory"]));
    assert_eq!(line(&imported, "gateway.volumes[0]").outcome, Outcome::Reported, "long-form bind mount");

    // cap_add beyond NET_BIND_SERVICE, security_opt, hostname; named volumes kept, host mounts not.
    let imported = import("host-monitor.yaml");
    let objects = self::objects(&imported);
    assert_eq!(
        spec(&objects, "monitor")["securityContext"]["capabilities"],
        json!({"drop": ["ALL"], "add": ["SYS_PTRACE"]})
    );
    assert!(line(&imported, "monitor.cap_add").detail.contains("allows only NET_BIND_SERVICE"));
    assert_eq!(line(&imported, "monitor.security_opt").outcome, Outcome::Unsupported);
    let mounts: Vec<&str> = spec(&objects, "monitor")["storage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["/etc/netdata", "/var/lib/netdata", "/var/cache/netdata"]);
    assert_eq!(line(&imported, "monitor.volumes[3]").outcome, Outcome::Reported, "read-only host mount");

    // An anonymous volume; the same path as a bind mount and a named volume.
    let imported = import("spa-spring-mysql.yaml");
    let objects = self::objects(&imported);
    assert!(line(&imported, "ui.volumes[1]").detail.contains("anonymous volume"));
    assert_eq!(spec(&objects, "ui")["image"], "registry.invalid/ui:REPLACE_ME");
    let imported = import("metrics-dashboards.yaml");
    let objects = self::objects(&imported);
    assert_eq!(spec(&objects, "metrics")["storage"][0]["mountPath"], "/prometheus");
    assert_eq!(
        spec(&objects, "metrics")["args"],
        json!(["--config.file=/etc/prometheus/scrape.yml", "--storage.tsdb.retention.time=15d"])
    );

    // Dotted keys in map-form environment, a string command, tcp and udp on one port.
    let imported = import("search-ingest-dashboards.yaml");
    let objects = self::objects(&imported);
    assert_eq!(line(&imported, "search.environment.discovery.type").outcome, Outcome::Unsupported);
    assert_eq!(spec(&objects, "search")["config"]["data"], json!({"ES_JAVA_OPTS": "-Xms768m -Xmx768m"}));
    assert_eq!(
        spec(&objects, "ingest")["args"],
        json!(["logstash", "-f", "/usr/share/logstash/pipeline/syslog.conf", "--config.reload.automatic"])
    );
    let ports: Vec<(&str, &str)> = spec(&objects, "ingest")["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["protocol"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [("tcp-5140", "TCP"), ("udp-5140", "UDP"), ("tcp-9600", "TCP")]);
    // The obsolete version key, static addresses; DNS over tcp and udp.
    let imported = import("dns-filter-doh.yaml");
    let objects = self::objects(&imported);
    assert_eq!(line(&imported, "version").outcome, Outcome::Reported);
    assert_eq!(line(&imported, "filter.networks").outcome, Outcome::Reported);
    assert_eq!(
        spec(&objects, "filter")["ports"][1],
        json!({"name": "udp-53", "containerPort": 53, "protocol": "UDP"})
    );

    // web + db + cache; a secret-looking password per service.
    let objects = self::objects(&import("wiki-redis-mariadb.yaml"));
    assert_eq!(
        spec(&objects, "mariadb")["args"],
        json!(["--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci"])
    );
    assert_eq!(find(&objects, "Secret", "wiki-env")["stringData"], json!({"DB_PASSWORD": "REPLACE_ME"}));
    assert_eq!(
        find(&objects, "Secret", "mariadb-env")["stringData"],
        json!({"MYSQL_PASSWORD": "REPLACE_ME", "MYSQL_ROOT_PASSWORD": "REPLACE_ME"})
    );
}

#[test]
fn options_namespace_and_environment_variables() {
    let options = ImportOptions {
        namespace: Some("shop".into()),
        env_target: EnvTarget::Env,
        ..ImportOptions::default()
    };
    let imported = import_with("forge-postgres.yaml", &options);
    let objects = objects(&imported);
    assert!(objects.iter().all(|o| o["metadata"]["namespace"] == "shop"));
    let db = spec(&objects, "db");
    assert_eq!(
        db["env"],
        json!([{"name": "POSTGRES_DB", "value": "forge"}, {"name": "POSTGRES_USER", "value": "forge"}])
    );
    assert_eq!(
        db["config"],
        json!({"secrets": [{"name": "POSTGRES_PASSWORD", "secretKeyRef": {"name": "db-env", "key": "POSTGRES_PASSWORD"}}]})
    );
    assert!(line(&imported, "db.environment.POSTGRES_DB").detail.starts_with("env POSTGRES_DB"));
    // DB_PASSWD looks like a secret too; no depends_on in the file, none in the output.
    let forge = spec(&objects, "forge");
    assert_eq!(
        forge["config"],
        json!({"secrets": [{"name": "DB_PASSWD", "secretKeyRef": {"name": "forge-env", "key": "DB_PASSWD"}}]})
    );
    assert!(forge["env"].as_array().unwrap().iter().all(|e| e["name"] != "DB_PASSWD"));
    assert!(forge.get("dependsOn").is_none());
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay-operator"))
}

#[test]
fn cli_import_piped_into_render() {
    let compose = fixtures().join("seed-keeper-stack.yml");
    let import = binary()
        .args(["import", "-f"])
        .arg(&compose)
        .arg("--env-file")
        .arg(fixtures().join("seed-keeper.env"))
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let report = String::from_utf8_lossy(&import.stderr);
    assert!(report.contains("scheduler.command \"python -m src.scheduler\": mapped → spec.args"), "{report}");
    assert!(report.contains("summary: "), "{report}");

    let mut render = binary()
        .args(["render", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    render.stdin.take().unwrap().write_all(&import.stdout).unwrap();
    let rendered = render.wait_with_output().unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let pods: Vec<Value> = serde_saphyr::from_multiple::<Value>(&String::from_utf8_lossy(&rendered.stdout))
        .unwrap()
        .into_iter()
        .filter(|d| d["kind"] == "Pod")
        .collect();
    assert_eq!(pods.len(), 8);
    let scheduler = pods.iter().find(|p| p["metadata"]["name"] == "scheduler-0").unwrap();
    assert_eq!(scheduler["spec"]["containers"][0]["args"], json!(["python", "-m", "src.scheduler"]));

    // stdin in, and unreadable input is the only failure.
    let out = import_stdin(b"services: {web: {image: 'web:1', bogus: 1}}");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.bogus 1: unsupported"));
    let missing = binary().args(["import", "-f", "/nonexistent/compose.yml"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    assert!(!import_stdin(b"- just\n- a list\n").status.success());
}

/// `relay-operator import -f -` with `input` on stdin.
fn import_stdin(input: &[u8]) -> std::process::Output {
    let mut child = binary()
        .args(["import", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn names_are_made_valid_and_cycles_are_not_imported() {
    let text = "services:\n  Web.App: {image: 'w:1', depends_on: [kafka_connect], expose: [80]}\n  kafka_connect: {image: 'c:1', depends_on: [Web.App, nowhere]}\n";
    let imported =
        import::import_compose("inline", text, &ImportOptions::default(), &Dir(fixtures())).unwrap();
    let objects = objects(&imported);
    assert_eq!(spec(&objects, "web-app")["dependsOn"], json!(["kafka-connect"]));
    assert!(
        spec(&objects, "kafka-connect").get("dependsOn").is_none(),
        "the edge closing the cycle is dropped"
    );
    assert_eq!(line(&imported, "kafka_connect.depends_on.Web.App").outcome, Outcome::Unsupported);
    assert_eq!(line(&imported, "kafka_connect.depends_on.nowhere").outcome, Outcome::Reported);
    assert!(line(&imported, "kafka_connect").detail.starts_with("RelayService kafka-connect (renamed"));
    assert!(imported.report.to_string().contains("service Web.App (RelayService web-app):"));
}
