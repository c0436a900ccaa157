"""twistd plugin: ``twistd -n spark [options]`` runs the twisted-spark server."""

from twisted.application.service import ServiceMaker

spark = ServiceMaker(
    "twisted-spark",
    "twisted_spark.tap",
    "A self-hosted Spark Cloud: device protocol and REST API.",
    "spark",
)
