%% The public record of erlkaf: a Kafka message as delivery reports and consumers see it.
%% Field order is the original erlkaf's (an 8-tuple), kept for compatibility.

-ifndef(ERLKAF_HRL).
-define(ERLKAF_HRL, true).

%% librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose.
-define(DEFAULT_PARTITIONER, -1).

-record(erlkaf_msg, {
    topic :: binary(),
    partition :: integer(),
    %% Offset the broker assigned; -1001 (unknown) on error or with acks=0.
    offset :: integer(),
    key :: undefined | binary(),
    value :: undefined | binary(),
    %% In order, duplicates kept; undefined when the message has no headers.
    headers :: undefined | [{binary(), undefined | binary()}],
    timestamp :: {integer(), create_time | log_append_time | not_available}
}).

-endif.
