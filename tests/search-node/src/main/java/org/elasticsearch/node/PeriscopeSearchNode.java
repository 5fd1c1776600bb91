package org.elasticsearch.node;

import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.MockPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.util.Collection;

/**
 * A production {@link Node} whose plugins are classes on the classpath (here: Netty4Plugin, the HTTP
 * layer that the Elasticsearch distribution ships as the transport-netty4 module).
 *
 * It lives in org.elasticsearch.node only because NodeConstruction / NodeServiceProvider are
 * package-private; everything else (services, REST layer, mappings, Lucene) is the stock server.
 * MockPluginsService (from org.elasticsearch.test:framework) is the stock PluginsService that accepts
 * classpath plugin classes instead of a modules/ directory; it has no test-only behaviour.
 * Unlike the framework's MockNode this does not touch ESTestCase, whose static initialiser refuses
 * to run as root ("can not run elasticsearch as root").
 */
public final class PeriscopeSearchNode extends Node {
    public PeriscopeSearchNode(Environment environment, Collection<Class<? extends Plugin>> classpathPlugins) {
        super(NodeConstruction.prepareConstruction(environment, null, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader pluginsLoader) {
                return new MockPluginsService(env.settings(), env, classpathPlugins);
            }
        }, true));
    }
}
