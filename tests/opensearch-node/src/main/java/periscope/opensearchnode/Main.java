package periscope.opensearchnode;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.PeriscopeOpenSearchNode;
import org.opensearch.node.Node;
import org.opensearch.transport.Netty4Plugin;

import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Starts one real OpenSearch node inside this JVM: the server jar from Maven Central plus the
 * Netty 4 HTTP/transport module (org.opensearch.plugin:transport-netty4-client), loaded as a
 * classpath plugin (see {@link PeriscopeOpenSearchNode}).
 *
 * Usage: Main <http-port> <data-dir>
 * Prints "READY http://127.0.0.1:<port>" once cluster health is yellow or green; stops on SIGTERM.
 */
public final class Main {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Main <http-port> <data-dir>");
            System.exit(2);
        }
        final int port = Integer.parseInt(args[0]);
        final Path home = Path.of(args[1]).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Files.createDirectories(home.resolve("config"));

        final Settings settings = Settings.builder()
            .put("cluster.name", "periscope-test")
            .put("node.name", "periscope-opensearch-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            .put("transport.port", "0")
            .put("http.type", Netty4Plugin.NETTY_HTTP_TRANSPORT_NAME)
            .put("transport.type", Netty4Plugin.NETTY_TRANSPORT_NAME)
            .put("discovery.type", "single-node")
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.destructive_requires_name", false)
            // root log level (to stderr); OPENSEARCH_NODE_LOG_LEVEL=INFO shows the usual node start-up log
            .put("logger.level", System.getenv().getOrDefault("OPENSEARCH_NODE_LOG_LEVEL", "WARN"))
            .build();

        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName("periscope-opensearch-node");
        LogConfigurator.configureWithoutConfig(settings);

        final Environment env = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "periscope-opensearch-node");
        final Node node = new PeriscopeOpenSearchNode(env, List.of(Netty4Plugin.class));
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                System.out.println("STOPPED");
                System.out.flush();
                stopped.countDown();
            }
        }, "periscope-opensearch-node-shutdown"));

        node.start();

        final String base = "http://127.0.0.1:" + port;
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (true) {
            String status = healthStatus(base);
            if ("green".equals(status) || "yellow".equals(status)) {
                break;
            }
            if (System.nanoTime() > deadline) {
                System.err.println("OpenSearch node did not become healthy (last status: " + status + ")");
                System.exit(1);
            }
            Thread.sleep(200);
        }
        System.out.println("READY " + base);
        System.out.flush();
        stopped.await();
    }

    private static String healthStatus(String base) {
        try {
            HttpURLConnection c = (HttpURLConnection) new URL(base + "/_cluster/health?wait_for_status=yellow&timeout=5s")
                .openConnection();
            c.setConnectTimeout(1000);
            c.setReadTimeout(10000);
            if (c.getResponseCode() != 200) {
                return "http-" + c.getResponseCode();
            }
            try (InputStream in = c.getInputStream()) {
                String body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
                int i = body.indexOf("\"status\":\"");
                if (i < 0) {
                    return "unparsed";
                }
                int s = i + "\"status\":\"".length();
                return body.substring(s, body.indexOf('"', s));
            }
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }
}
