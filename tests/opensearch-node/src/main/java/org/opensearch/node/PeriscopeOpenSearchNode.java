package org.opensearch.node;

import org.opensearch.env.Environment;
import org.opensearch.plugins.Plugin;

import java.util.Collection;

/**
 * A production {@link Node} whose plugins are classes on the classpath (here: Netty4Plugin, the HTTP
 * layer that the OpenSearch distribution ships as the transport-netty4 module).
 *
 * OpenSearch's Node keeps the constructor that takes classpath plugin classes (the one the test
 * framework's MockNode calls); it is protected, so this subclass only makes it reachable. Everything
 * else (services, REST layer including {@code GET /}, data streams, mappings, Lucene) is the stock
 * server. Unlike MockNode it does not touch OpenSearchTestCase or any test-only code.
 */
public final class PeriscopeOpenSearchNode extends Node {
    public PeriscopeOpenSearchNode(Environment environment, Collection<Class<? extends Plugin>> classpathPlugins) {
        super(environment, classpathPlugins, true);
    }
}
