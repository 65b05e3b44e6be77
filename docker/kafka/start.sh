#!/bin/sh
# The Kafka service of docker/compose.yaml: one KRaft node (broker and controller), secured as
# `featurebus up` secures its local broker (platform/kafka/runtime.py): SASL/SCRAM-SHA-512 for clients
# and the broker itself, PLAIN on the controller listener (KRaft cannot guard it with SCRAM), the
# StandardAuthorizer, and nothing allowed without an ACL. `featurebus kafka setup` (the `setup`
# service) then creates each component's principal and ACLs.
set -eu
admin_password="${FEATUREBUS_KAFKA_ADMIN_PASSWORD:?set FEATUREBUS_KAFKA_ADMIN_PASSWORD (docker/.env)}"
controller_password="${FEATUREBUS_KAFKA_CONTROLLER_PASSWORD:?set FEATUREBUS_KAFKA_CONTROLLER_PASSWORD (docker/.env)}"
data=/var/lib/kafka/data
config=/tmp/featurebus-server.properties
umask 077  # the files below hold passwords

cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://0.0.0.0:9092,CONTROLLER://kafka:9093
advertised.listeners=SASL_PLAINTEXT://kafka:9092
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="featurebus-admin" password="${admin_password}";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="featurebus-controller" password="${controller_password}" user_featurebus-controller="${controller_password}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:featurebus-admin;User:featurebus-controller
allow.everyone.if.no.acl.found=false
log.dirs=${data}
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES

# The admin's client settings, for the health check.
cat > /tmp/featurebus-admin.properties <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="featurebus-admin" password="${admin_password}";
PROPERTIES

# Format once; the admin's SCRAM credential goes into the metadata so it exists before the broker
# reads any (the broker authenticates to itself with it).
if [ ! -f "$data/meta.properties" ]; then
  /opt/kafka/bin/kafka-storage.sh format --cluster-id "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
    --config "$config" --add-scram "SCRAM-SHA-512=[name=featurebus-admin,password=${admin_password}]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
