%%% @doc The root supervisor.
%%%
%%% ```
%%% erlkaf_sup (one_for_one; owns the client registry ETS table)
%%%   erlkaf_clients_sup (one_for_one; one child per client, added at run time)
%%%     erlkaf_producer_server  ClientId  (one per producer client)
%%% '''
%%% The registry table lives in this process so that it outlives any client process.
-module(erlkaf_sup).
-behaviour(supervisor).

-export([start_link/0, init/1]).

-spec start_link() -> supervisor:startlink_ret().
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

init([]) ->
    ok = erlkaf_registry:create_table(),
    Clients = #{
        id => erlkaf_clients_sup,
        start => {erlkaf_clients_sup, start_link, []},
        type => supervisor,
        shutdown => infinity
    },
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, [Clients]}}.
