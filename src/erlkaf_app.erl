%%% @doc The erlkaf application: starts `erlkaf_sup', then the clients listed in the
%%% `clients' application environment (see the README).
-module(erlkaf_app).
-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    case erlkaf_sup:start_link() of
        {ok, Pid} ->
            case erlkaf_sys_config:start_clients(application:get_env(erlkaf, clients, [])) of
                ok -> {ok, Pid};
                {error, Reason} -> {error, Reason}
            end;
        Error ->
            Error
    end.

stop(_State) ->
    ok.
