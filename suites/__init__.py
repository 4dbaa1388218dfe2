"""The gate's test suites, one file per stage; shipped inside the package and collected by the plugin."""
