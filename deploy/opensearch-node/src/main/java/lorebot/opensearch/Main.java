package lorebot.opensearch;

import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.http.HttpServerTransport;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/**
 * One real OpenSearch node for lorebot's tests, in this JVM: the server jar and the modules and
 * plugins named in {@link #PLUGINS} loaded from the classpath (as the test framework's MockNode
 * does), HTTP and transport on loopback.
 *
 * <p>Once the node has started it writes its HTTP address, {@code http://127.0.0.1:PORT}, to
 * {@code --url-file} (written to a temporary name and renamed, so a reader never sees half of it)
 * and prints {@code OPENSEARCH_URL=...} on stdout. It stops cleanly (the node closed, shards
 * flushed) on SIGTERM or SIGINT, and also when stdin closes if {@code --exit-on-stdin-close} is
 * given (so a parent that dies takes the node with it). Waiting for green is the launcher's job
 * ({@code opensearch_node.py}), over HTTP, as for any cluster.
 *
 * <p>Options ({@code --name value}): {@code --home} (required; data and logs go below it),
 * {@code --cluster-name}, {@code --node-name}, {@code --http-port} (0: any free port),
 * {@code --transport-port} (0: any), {@code --seed-hosts host:port,...} and
 * {@code --initial-cluster-managers name,...} for a cluster of several nodes (without them the
 * node is a single-node cluster), {@code --url-file}, {@code --setting key=value} (repeatable).
 */
public final class Main {

    /** Modules of the distribution lorebot needs, then the k-NN plugin. */
    static final String[] PLUGINS = {
        "org.opensearch.transport.Netty4Plugin",            // HTTP and transport
        "org.opensearch.analysis.common.CommonAnalysisPlugin", // keep_types, porter_stem, cjk_*
        "org.opensearch.index.reindex.ReindexPlugin",       // _delete_by_query, _reindex
        "org.opensearch.painless.PainlessPlugin",           // the plugin k-NN extends
        "org.opensearch.knn.plugin.KNNPlugin",              // knn_vector, the knn query
    };

    /** Node subclass for the protected constructor that takes classpath plugins. */
    static final class ClasspathNode extends Node {
        ClasspathNode(Environment environment, List<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    /** Console logging at INFO, deprecations included (the launcher sends stdout to a file). */
    static final String LOG4J = String.join("\n",
        "status = error",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n",
        "rootLogger.level = info",
        "rootLogger.appenderRef.console.ref = console",
        "");

    /** Whether the k-NN plugin's faiss JNI library is on {@code java.library.path}. */
    static boolean faissLibraryPresent() {
        String path = System.getProperty("java.library.path", "");
        for (String dir : path.split(java.io.File.pathSeparator)) {
            java.io.File[] found = new java.io.File(dir).listFiles(
                (d, name) -> name.startsWith("libopensearchknn_faiss"));
            if (found != null && found.length > 0) {
                return true;
            }
        }
        return false;
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new LinkedHashMap<>();
        List<String> extra = new ArrayList<>();
        boolean exitOnStdinClose = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--exit-on-stdin-close")) {
                exitOnStdinClose = true;
            } else if (a.equals("--setting") && i + 1 < args.length) {
                extra.add(args[++i]);
            } else if (a.startsWith("--") && i + 1 < args.length) {
                opts.put(a.substring(2), args[++i]);
            } else {
                System.err.println("opensearch-node: unknown argument " + a);
                System.exit(2);
            }
        }
        if (!opts.containsKey("home")) {
            System.err.println("opensearch-node: --home DIR is required");
            System.exit(2);
        }
        Path home = Paths.get(opts.get("home")).toAbsolutePath();
        String nodeName = opts.getOrDefault("node-name", "node-0");
        Files.createDirectories(home.resolve("config"));

        Settings.Builder b = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", opts.getOrDefault("cluster-name", "lorebot-test"))
            .put("node.name", nodeName)
            .put("network.host", "127.0.0.1")
            .put("http.port", opts.getOrDefault("http-port", "0"))
            .put("transport.port", opts.getOrDefault("transport-port", "0"))
            // A test machine's disk may be fuller than a production watermark allows.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("http.type", "netty4")
            .put("transport.type", "netty4");
        if (opts.containsKey("seed-hosts")) {
            b.putList("discovery.seed_hosts", opts.get("seed-hosts").split(","));
            b.putList("cluster.initial_cluster_manager_nodes",
                opts.getOrDefault("initial-cluster-managers", nodeName).split(","));
        } else {
            b.put("discovery.type", "single-node");
        }
        for (String kv : extra) {
            int eq = kv.indexOf('=');
            if (eq < 1) {
                System.err.println("opensearch-node: --setting wants key=value, not " + kv);
                System.exit(2);
            }
            b.put(kv.substring(0, eq), kv.substring(eq + 1));
        }
        Settings settings = b.build();
        Path log4j = home.resolve("config").resolve("log4j2.properties");
        if (!Files.exists(log4j)) {
            Files.writeString(log4j, LOG4J, StandardCharsets.UTF_8);
        }
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Collections.emptyMap(), home.resolve("config"), () -> nodeName);
        LogConfigurator.registerErrorListener();
        LogConfigurator.setNodeName(nodeName);
        LogConfigurator.configure(env);
        if (!faissLibraryPresent()) {
            System.out.println("opensearch-node: no faiss JNI library (libopensearchknn_faiss*.so) "
                + "on java.library.path: map knn_vector fields with the lucene engine; a faiss "
                + "field makes this node fail at its first refresh (UnsatisfiedLinkError)");
        }

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : PLUGINS) {
            plugins.add(Class.forName(name).asSubclass(Plugin.class));
        }
        Node node = new ClasspathNode(env, plugins);

        CountDownLatch stopped = new CountDownLatch(1);
        Path urlFile = opts.containsKey("url-file") ? Paths.get(opts.get("url-file")) : null;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                if (urlFile != null) {
                    Files.deleteIfExists(urlFile);
                }
                node.close();
                if (!node.awaitClose(30, TimeUnit.SECONDS)) {
                    System.err.println("opensearch-node: the node did not close within 30 s");
                }
                System.out.println("opensearch-node: stopped");
            } catch (IOException | InterruptedException e) {
                System.err.println("opensearch-node: stopping failed: " + e);
            } finally {
                stopped.countDown();
            }
        }, "opensearch-node-stop"));

        node.start();
        InetSocketAddress http = node.injector().getInstance(HttpServerTransport.class)
            .boundAddress().publishAddress().address();
        String url = "http://" + http.getHostString() + ":" + http.getPort();
        if (urlFile != null) {
            Path tmp = urlFile.resolveSibling(urlFile.getFileName() + ".tmp");
            Files.writeString(tmp, url + "\n", StandardCharsets.UTF_8);
            Files.move(tmp, urlFile, StandardCopyOption.ATOMIC_MOVE,
                StandardCopyOption.REPLACE_EXISTING);
        }
        System.out.println("OPENSEARCH_URL=" + url);
        System.out.flush();

        if (exitOnStdinClose) {
            Thread watcher = new Thread(() -> {
                InputStream in = System.in;
                try {
                    while (in.read() != -1) {
                        // ignore input; only its end matters
                    }
                } catch (IOException ignored) {
                    // treated as closed
                }
                System.out.println("opensearch-node: stdin closed, stopping");
                System.exit(0);
            }, "opensearch-node-stdin");
            watcher.setDaemon(true);
            watcher.start();
        }
        stopped.await();
    }
}
