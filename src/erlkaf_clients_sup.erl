%%% @doc Supervises one process per client. Children are added by `erlkaf:create_*' and
%%% removed by `erlkaf:stop_client/1'. A producer process that crashes is restarted
%%% (`transient') with the configuration it was created with: its native client is torn
%%% down with the old process (queued messages get error reports) and a new one is made.
-module(erlkaf_clients_sup).
-behaviour(supervisor).

-export([start_link/0, init/1, start_client/2, stop_client/1]).

-spec start_link() -> supervisor:startlink_ret().
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, []}}.

%% @doc Starts a client process from its child spec.
-spec start_client(term(), supervisor:child_spec()) -> ok | {error, term()}.
start_client(ClientId, Spec) ->
    case supervisor:start_child(?MODULE, Spec#{id => ClientId}) of
        {ok, _Pid} -> ok;
        {error, {already_started, _}} -> {error, already_exists};
        {error, already_present} ->
            %% A client that stopped by itself (a fatal error): its spec is still here.
            _ = supervisor:delete_child(?MODULE, ClientId),
            start_client(ClientId, Spec);
        {error, {Reason, _Child}} -> {error, Reason};
        {error, Reason} -> {error, Reason}
    end.

%% @doc Stops a client: its process stops the native client (flush, then purge) first.
-spec stop_client(term()) -> ok | {error, undefined_client}.
stop_client(ClientId) ->
    case supervisor:terminate_child(?MODULE, ClientId) of
        ok -> supervisor:delete_child(?MODULE, ClientId);
        {error, not_found} -> {error, undefined_client}
    end.
