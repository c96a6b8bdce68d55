# Sourced by the streaming benchmarks (pipeline_bench.sh, correlator_bench.sh): the broker, a
# fresh set of topics for the run, and the generator of their audit events.
#
# Expects OUT, TOKENTRAIL, SERVICE_ACCOUNTS, REPLAY_EVERY and PARTITIONS; sets BOOT (the
# broker), PROC_BOOT, PROC_SECURITY and PROC_FLAGS (how the tokentrail processes reach it, see
# KAFKA_SECURITY below), JARS, RUN and the topic names RAW OBS DLQ FINDINGS STATE (a first set,
# made at once; new_topics makes another); defines new_topics, gen, replays and findings_count.

# Each replay gets an address of its own from 198.18.0.0/15 (i mod 62,500), and a finding is a
# (credential, address) pair: beyond 125,000 events two replays of one account would share an
# address and one expected finding would never come.
((EVENTS <= 125000)) || { echo "EVENTS=$EVENTS: at most 125000 (replay addresses would repeat)" >&2; exit 2; }
command -v kcat >/dev/null || { echo "kcat not found: apt-get install kcat" >&2; exit 1; }
if [[ ! -x "$TOKENTRAIL" ]]; then cargo build --release -p tokentrail; fi
BOOT=${TOKENTRAIL_KAFKA_BOOTSTRAP:-$(integration-tests/kafka/broker.sh start)}
JARS=integration-tests/kafka/.build/jars
compgen -G "$JARS/kafka_2.13-*.jar" >/dev/null || integration-tests/kafka/broker.sh jars

# KAFKA_SECURITY=ssl|sasl_ssl: the tokentrail processes reach the broker through that secure
# listener of a broker.sh broker (mutual TLS, or SCRAM-SHA-512 over TLS: the cost of TLS on the
# pipeline), with the same settings as any deployment: PROC_BOOT, PROC_SECURITY (the JSON of a
# `security` section) and PROC_FLAGS (the same as --kafka-* flags). Topics, kcat and the
# counting stay on PLAINTEXT ($BOOT).
PROC_BOOT=$BOOT PROC_SECURITY='{"protocol": "plaintext"}' PROC_FLAGS=()
if [[ -n "${KAFKA_SECURITY:-}" ]]; then
    listeners=$(integration-tests/kafka/broker.sh listeners) ||
        { echo "KAFKA_SECURITY needs a broker started by broker.sh (its secure listeners)" >&2; exit 2; }
    field() { awk -v k="$1" '$1 == k {print $2}' <<<"$listeners"; }
    TLS=$(field tls) CA="$(field tls)/ca.crt"
    case $KAFKA_SECURITY in
        ssl)
            PROC_BOOT=$(field ssl)
            PROC_SECURITY="{\"protocol\": \"ssl\", \"tls\": {\"ca_file\": \"$CA\", \"cert_file\": \"$TLS/client.crt\", \"key_file\": \"$TLS/client.key\"}}"
            PROC_FLAGS=(--kafka-security-protocol ssl --kafka-ca-file "$CA" --kafka-cert-file "$TLS/client.crt" --kafka-key-file "$TLS/client.key")
            ;;
        sasl_ssl)
            PROC_BOOT=$(field sasl_ssl)
            PROC_SECURITY="{\"protocol\": \"sasl_ssl\", \"tls\": {\"ca_file\": \"$CA\"}, \"sasl\": {\"mechanism\": \"SCRAM-SHA-512\", \"username\": \"$(cat "$TLS/scram-username")\", \"password_file\": \"$TLS/scram-password\"}}"
            PROC_FLAGS=(--kafka-security-protocol sasl_ssl --kafka-ca-file "$CA" --kafka-sasl-mechanism SCRAM-SHA-512
                --kafka-sasl-username "$(cat "$TLS/scram-username")" --kafka-sasl-password-file "$TLS/scram-password")
            ;;
        *) echo "KAFKA_SECURITY=$KAFKA_SECURITY: ssl or sasl_ssl" >&2; exit 2 ;;
    esac
fi

# Topics are created with the Admin API of the broker's own kafka-clients jar (the broker's jar
# set has no command-line tools), as a single-file Java program: one JVM for every topic of a
# run, each argument NAME:PARTITIONS[:CONFIG=VALUE,...].
cat >"$OUT/CreateTopic.java" <<'JAVA'
import java.util.*;
import org.apache.kafka.clients.admin.*;
public class CreateTopic {
    public static void main(String[] a) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", a[0]);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < a.length; i++) {
            String[] f = a[i].split(":", 3);
            Map<String, String> configs = new HashMap<>();
            if (f.length > 2) for (String c : f[2].split(",")) { String[] kv = c.split("=", 2); configs.put(kv[0], kv[1]); }
            topics.add(new NewTopic(f[0], Integer.parseInt(f[1]), (short) 1).configs(configs));
        }
        try (Admin admin = Admin.create(p)) { admin.createTopics(topics).all().get(); }
    }
}
JAVA
# A fresh set of topics (and so a fresh pipeline): sets RUN, RAW, OBS, DLQ, FINDINGS, STATE.
new_topics() {
    RUN=bench-$(date +%s%N | cut -c1-13)-$$
    RAW=$RUN-raw OBS=$RUN-obs DLQ=$RUN-dlq FINDINGS=$RUN-findings STATE=$RUN-state
    java -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j2.level=warn -cp "$JARS/*" "$OUT/CreateTopic.java" "$BOOT" \
        "$RAW:2" "$OBS:$PARTITIONS" "$DLQ:1" "$FINDINGS:1" \
        "$STATE:$PARTITIONS:cleanup.policy=compact,max.message.bytes=67108864" >/dev/null 2>&1
}
new_topics

# Audit events: uses of pod-bound tokens from their pods' addresses, every REPLAY_EVERY-th
# one from an off-cluster address of its own (a new finding), and each account's last event a
# replay. Pods are unknown to the engine (no agents): their uses are judged, found unverifiable
# and kept in the usage table: the engine's full path for a token use.
gen() { # count seed
    python3 - "$1" "$2" "$SERVICE_ACCOUNTS" "$REPLAY_EVERY" <<'PY'
import json, sys, time
n, seed, accounts, every = (int(a) for a in sys.argv[1:])
last = {}
for i in range(n):
    last[i % accounts] = i
now = time.time()
for i in range(n):
    sa = i % accounts
    replay = i % every == every - 1 or last[sa] == i
    ip = f"198.{18 + seed % 2}.{(i // 250) % 250}.{i % 250 + 1}" if replay else f"10.244.{sa % 250}.{sa // 250 + 2}"
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%06dZ" % (i % 1000000)
    print(json.dumps({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": f"bench-{seed}-{i}", "stage": "ResponseComplete", "verb": "list",
        "requestURI": f"/api/v1/namespaces/ns{sa}/configmaps",
        "user": {"username": f"system:serviceaccount:ns{sa}:sa{sa}", "groups": ["system:serviceaccounts"],
                 "extra": {"authentication.kubernetes.io/credential-id": [f"JTI=jti-{seed}-{sa}"],
                           "authentication.kubernetes.io/node-name": ["worker-1"],
                           "authentication.kubernetes.io/pod-name": [f"pod-{sa}"],
                           "authentication.kubernetes.io/pod-uid": [f"uid-{sa}"]}},
        "sourceIPs": [ip], "userAgent": "bench/1.0",
        "objectRef": {"resource": "configmaps", "namespace": f"ns{sa}", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": t, "stageTimestamp": t}, separators=(",", ":")))
PY
}
# Findings a file of gen's events must give: its distinct (credential, replay address) pairs.
replays() {
    python3 - "$1" <<'PY'
import json, sys
pairs = set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["sourceIPs"][0].startswith("198."):
        pairs.add((e["user"]["extra"]["authentication.kubernetes.io/credential-id"][0], e["sourceIPs"][0]))
print(len(pairs))
PY
}
findings_count() { kcat -C -b "$BOOT" -t "$FINDINGS" -o beginning -e -q -X isolation.level=read_committed 2>/dev/null | grep -c '"rule":"token-used-off-cluster"' || true; }

